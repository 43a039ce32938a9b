"""Storage faults a user can fix (no permission, a read-only or full disk, credentials
Azure refuses, an endpoint nobody answers, a missing container) as one `StorageError`: a
line naming the path, the cause and the fix, never a credential. `storage_error()`
classifies any exception into one (or None)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import NoReturn

from ..contract import EXIT_CONFIG, PermanentError
from .redaction import redact
from .temporaries import public_name


class StorageError(RuntimeError):
    """A storage fault the user must fix, as one line: the path or URI, the cause, the fix.

    Raised as one of two kinds, by whether waiting could help: StorageRefused (a
    refusal, a missing container, a read-only disk: they do not change by themselves;
    a PermanentError) or StorageUnavailable (`transient`: the storage did not answer,
    or the disk is full; a pod exits to be retried, the operator retries later).
    `exit_code` is local mode's for both: 2, bad configuration."""

    exit_code = EXIT_CONFIG
    transient = False

    def __init__(self, message: str):
        super().__init__(redact(message))


class StorageRefused(StorageError, PermanentError):
    """A storage fault that retrying cannot fix."""


class StorageUnavailable(StorageError):
    """A storage fault that waiting may fix."""

    transient = True


def storage_error(e: BaseException, uri_or_path: str | None = None, *, writing: bool | None = None,
                  fix: str | None = None) -> StorageError | None:
    """`e` (or an exception it was raised from) as a StorageError, or None when it is
    no storage fault this module knows.

    `uri_or_path` names what was being read or written (else the exception's own file
    name or request URL is used); `writing` says it was a write (None: unknown); `fix`
    replaces the advice for a full or unwritable local disk."""
    for cause in _chain(e):
        if isinstance(cause, StorageError):
            return cause
        found = _classify(cause, uri_or_path, writing, fix)
        if found is not None:
            return found
    return None


def raise_classified(e: Exception, uri_or_path: str, *, writing: bool | None = True,
                     fix: str | None = None) -> NoReturn:
    error = storage_error(e, uri_or_path, writing=writing, fix=fix)
    if error is None:
        raise e
    if error is e:
        raise e
    raise error from e


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    """`e` and the exceptions it was raised from or while handling (not those hidden by `from None`)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ if e.__cause__ is not None else None if e.__suppress_context__ else e.__context__


def _classify(e: BaseException, where: str | None, writing: bool | None, fix: str | None) -> StorageError | None:
    if isinstance(e, OSError) and e.errno is not None:
        return _classify_os(e, where, writing, fix)
    from .azure import classify

    return classify(e, where)


def _classify_os(e: OSError, where: str | None, writing: bool | None, fix: str | None) -> StorageError | None:
    path = public_name(where or e.filename or "")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left" if e.errno == errno.ENOSPC else "disk quota exceeded"
        where_text = f" writing {path}" if path else " on the device"
        return StorageUnavailable(f"{cause}{where_text}; {fix or 'free space or choose another output.uri'}")
    if e.errno == errno.EROFS:
        return StorageRefused(f"output not writable: {path or 'the output folder'} (read-only file system); "
                              f"{fix or 'choose another output.uri or fix its permissions'}")
    blocker = _file_in_the_way(e.filename or where or "") if e.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if e.errno == errno.ENOTDIR or (e.errno == errno.EEXIST and writing is not False and blocker):
        what = f"{public_name(blocker)} is a file, not a folder" if blocker else "a part of it is a file, not a folder"
        if writing is False:
            return StorageRefused(f"cannot read {path or 'a folder'}: {what}; fix the path")
        return StorageRefused(f"output not writable: {path or 'the output folder'} ({what}); "
                              f"{fix or 'choose another output.uri, or move the file away'}")
    if e.errno in (errno.EACCES, errno.EPERM):
        if writing:
            return StorageRefused(f"output not writable: {path or 'the output folder'} (permission denied); "
                                  f"{fix or 'choose another output.uri or fix its permissions'}")
        return StorageRefused(f"permission denied: {path or 'a file or folder'}; "
                              f"{fix or 'fix its permissions, or choose another output.uri if it is the output'}")
    return None


def _file_in_the_way(path: str) -> str | None:
    """The regular file at `path` or above it, where a folder was wanted (local paths)."""
    while path and path not in ("/", "."):
        if os.path.lexists(path) and not os.path.isdir(path):
            return path
        path = os.path.dirname(path)
    return None


def short_cause(e: BaseException) -> str:
    """What went wrong under a connection error, in a few words."""
    import socket
    import ssl

    for cause in _chain_all(e):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({first_line(str(cause))})"
        if isinstance(cause, TimeoutError) or type(cause).__name__ in ("ServerTimeoutError", "ConnectionTimeoutError",
                                                                        "SocketTimeoutError", "TimeoutError"):
            return "timed out"
    return first_line(str(getattr(e, "message", None) or e))


def _chain_all(e: BaseException) -> Iterator[BaseException]:
    """Like _chain, also into azure-core's inner_exception and aiohttp's os_error."""
    todo: list[BaseException | None] = [e]
    seen: set[int] = set()
    while todo:
        cause = todo.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        todo += [cause.__cause__, cause.__context__, getattr(cause, "inner_exception", None),
                 getattr(cause, "os_error", None)]


def first_line(text: str, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."
