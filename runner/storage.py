"""Where data lives: fsspec filesystems, credentials, atomic writes and fetching.

Credentials are never part of a spec. In a pod they arrive as environment variables
(the secret named by `spec.storage.secretRef`, mounted with envFrom); the operator,
which serves many jobs in one process, passes the same secret's data explicitly.

Storage faults a user can fix (no permission, a read-only or full disk, credentials
Azure refuses, an endpoint nobody answers, a missing container) become one
`StorageError`: a line naming the path, the cause and the fix, never a credential.
`storage_error()` classifies any exception into one (or None). Azure requests are
retried for a bounded time (PARALLELRUN_STORAGE_RETRY_SECONDS, default 30), with a
warning per retry, instead of azure-core's silent minutes; a 403 is never retried.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import posixpath
import random
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .contract import EXIT_CONFIG, PermanentError
from .extras import install_hint
from .localfs import LOCAL_PROTOCOLS, LocalFS, local_path

if TYPE_CHECKING:
    import fsspec

log = logging.getLogger("parallelrun.storage")

# Secret keys (the names Azure's and AWS's own tools read) → fsspec options.
_AZURE = ("az", "abfs", "abfss")
_OPTIONS = {
    _AZURE: {
        "AZURE_STORAGE_CONNECTION_STRING": "connection_string",
        "AZURE_STORAGE_ACCOUNT_NAME": "account_name",
        "AZURE_STORAGE_ACCOUNT_KEY": "account_key",
        "AZURE_STORAGE_SAS_TOKEN": "sas_token",
        "AZURE_STORAGE_CLIENT_ID": "client_id",
        "AZURE_STORAGE_CLIENT_SECRET": "client_secret",
        "AZURE_STORAGE_TENANT_ID": "tenant_id",
    },
    ("s3", "s3a"): {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_ENDPOINT_URL": "endpoint_url",
    },
}


def protocol_of(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def storage_options(uri: str, env: Mapping[str, str] | None = None) -> dict:
    """fsspec options for `uri` from credential variables (default: this process's env)."""
    env = os.environ if env is None else env
    for protocols, names in _OPTIONS.items():
        if protocol_of(uri) in protocols:
            return {opt: env[key] for key, opt in names.items() if env.get(key)}
    return {}


class CredentialConflict(RuntimeError):
    """Explicit credentials were given while the process has its own in its environment."""


def _check_isolated(uri: str, env: Mapping[str, str]) -> None:
    """adlfs fills every option it is not given from os.environ (a connection string
    there beats an explicit account key), so a job's secret could be silently replaced
    by the operator's own credentials. Refuse rather than use the wrong ones."""
    if protocol_of(uri) not in _AZURE:
        return
    clashing = sorted(k for k in _OPTIONS[_AZURE] if os.environ.get(k) and k not in env)
    if clashing:
        raise CredentialConflict(f"this process has {', '.join(clashing)} set, which would override the job's "
                                 f"storage credentials for {uri}; remove it from the operator's environment")


def filesystem_modules(uri: str) -> tuple[str, ...]:
    """The modules `filesystem(uri)` will import: a worker's zygote imports them once, so
    that a worker does not (adlfs and the Azure SDK: 0.7-1 s), after the plan arrived."""
    if local_path(uri) is not None:
        return ()
    return ("fsspec", "adlfs") if protocol_of(uri) in _AZURE else ("fsspec",)


def filesystem(uri: str, env: Mapping[str, str] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem serving `uri` and the path inside it (no protocol, no trailing /).

    `env` holds explicit credentials (a job's secret, in the operator); None means
    this process's environment (a pod, local mode)."""
    if env is not None:
        _check_isolated(uri, env)
    if (path := local_path(uri)) is not None:  # without importing fsspec (localfs.py)
        return _LOCAL, path
    options = storage_options(uri, env)
    _remember_secrets(options)
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
    except ImportError as e:  # the protocol's package (adlfs, s3fs...) is not installed
        hint = (install_hint(e, any_module=True, needed_for=f"{protocol_of(uri)}://", module=_package_of(uri))
                or _first_line(str(e)))
        raise StorageRefused(f"{_public_name(uri)}: {hint}") from e
    except ValueError as e:  # adlfs: no or malformed credentials; fsspec: a scheme nobody serves
        if str(e).startswith("Protocol not known"):
            raise StorageRefused(f"{_public_name(uri)}: no storage is known for the scheme {protocol_of(uri)}://; use "
                                 "a local path, file://, az:// or abfs:// (parallelrun[azure]), s3:// (s3fs), gs:// "
                                 "(gcsfs) or another fsspec scheme") from e
        error = storage_error(e, uri)
        if error is None:
            raise
        raise error from e
    if protocol_of(uri) in _AZURE:
        _bound_retries(fs)
    return fs, path.rstrip("/") or path


_LOCAL = LocalFS()
def _package_of(uri: str) -> str | None:
    """The package fsspec loads for the scheme of `uri` (s3fs for s3://), as its registry names it."""
    from fsspec.registry import known_implementations

    return known_implementations.get(protocol_of(uri), {}).get("class", "").split(".")[0] or None


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is the local disk: a LocalFS, or fsspec's LocalFileSystem."""
    if isinstance(fs, LocalFS):  # asked per file by readers: the common answer first
        return True
    return ((fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)) == LOCAL_PROTOCOLS


def as_fsspec(fs):
    """`fs` as an fsspec filesystem, for a library that takes one (pyarrow's datasets):
    a LocalFS is fsspec's LocalFileSystem there."""
    return fs.fsspec() if isinstance(fs, LocalFS) else fs


def strip_protocol(uri: str) -> str:
    """The path of `uri` inside its filesystem, as filesystem() gives it."""
    if (path := local_path(uri)) is not None:
        return path
    import fsspec

    return fsspec.get_filesystem_class(protocol_of(uri))._strip_protocol(uri)


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes | list[bytes], durable: bool = False) -> None:
    """Publish `data` (bytes, or a list of them back to back) at `path` whole or not at all.

    An object store's single put is atomic (and durable) already: one request; on a
    local or mounted disk the bytes go to a temporary name in the same folder and are
    renamed into place, `durable`: fsynced first, so that a machine that crashes keeps
    the file whole once it was published. A failed write leaves no temporary file
    behind; a storage fault is raised as a StorageError naming `path` (chained to the
    original exception).
    """
    try:
        if is_local(fs):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = temporary_name(path)
            try:
                with open(tmp, "wb") as f:
                    for chunk in [data] if isinstance(data, bytes) else data:  # a list is not joined first
                        f.write(chunk)
                    if durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                _discard_local(tmp)
                raise
        else:
            fs.pipe_file(path, data if isinstance(data, bytes) else b"".join(data))
    except Exception as e:  # noqa: BLE001 - classified, else raised unchanged
        _raise_classified(e, display_path(fs, path))


@contextlib.contextmanager
def open_atomic(fs: fsspec.AbstractFileSystem, path: str) -> Iterator:
    """A binary file opened for writing that appears at `path` only when complete.

    Written under a temporary name beside `path` and moved into place on success; on
    any failure the temporary file is removed and a storage fault is raised as a
    StorageError naming `path`. (Closing a blob upload commits it, hence the
    temporary name on object stores too.)"""
    tmp = temporary_name(path)
    local = is_local(fs)
    try:
        if local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with (open(tmp, "wb") if local else fs.open(tmp, "wb")) as f:
                yield f
            if local:
                os.replace(tmp, path)
            else:
                fs.mv(tmp, path)
        except BaseException:
            if local:
                _discard_local(tmp)
            else:
                with contextlib.suppress(Exception):
                    if fs.exists(tmp):
                        fs.rm_file(tmp)
            raise
    except Exception as e:  # noqa: BLE001 - classified, else raised unchanged
        _raise_classified(e, display_path(fs, path))


_TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{32}-(.+)$")


def temporary_name(path: str) -> str:
    """Where a write of `path` goes first: `.tmp-<uuid>-<name>` in the same folder."""
    return f"{posixpath.dirname(path)}/.tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}"


def remove_stale_temporaries(fs: fsspec.AbstractFileSystem, folder: str, name: str | None = None) -> list[str]:
    """Delete the `.tmp-*` files that interrupted writes left in `folder` (all of them,
    or only those of the target file `name`); returns the paths removed.

    Call it only while nothing else writes into `folder` (the merge, before it writes:
    a killed merge leaves its whole half-written output under such a name)."""
    try:
        entries = fs.ls(folder, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.match(posixpath.basename(entry.rstrip("/")))
        if match and (name is None or match.group(1) == name):
            try:
                fs.rm_file(entry)
            except FileNotFoundError:
                continue
            removed.append(entry)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed


def _discard_local(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def display_path(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """`path` as a user wrote it: a local path as it is, an Azure blob as az://container/..."""
    if is_local(fs):
        return path
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "az" in protocols:
        return f"az://{path.lstrip('/')}"
    return fs.unstrip_protocol(path)


def fetch(uri: str, dest: str) -> str:
    """A local path holding `uri` (file or folder): local paths as they are, remote ones copied under `dest`.

    A missing `uri` is a FileNotFoundError; a storage fault (refused, unreachable, the
    scratch disk full) a StorageError."""
    try:
        return _fetch(uri, dest)
    except (StorageError, FileNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 - classified, else raised unchanged
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            _raise_classified(e, dest, fix="free space there, or point TMPDIR or PARALLELRUN_SCRATCH elsewhere")
        local_file = isinstance(e, OSError) and e.filename  # the copy under `dest`, not the source
        _raise_classified(e, str(e.filename) if local_file else uri, writing=True if local_file else False)


def _fetch(uri: str, dest: str) -> str:
    fs, path = filesystem(uri)
    if is_local(fs):
        if not fs.exists(path):
            raise FileNotFoundError(f"{uri}: no such file or folder")
        return path
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    target = os.path.join(dest, posixpath.basename(path) or "data")
    if os.path.exists(target):
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    if fs.isdir(path):
        fs.get(path + "/", target + "/", recursive=True)
    else:
        fs.get(path, target)
    return target


# -- storage faults, in one line -------------------------------------------------------

RETRY_SECONDS_VARIABLE = "PARALLELRUN_STORAGE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 30.0
_CREDENTIALS_FIX = "check the credentials in {variables} or the Secret named by spec.storage.secretRef"


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
        super().__init__(_redact(message))


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


def _raise_classified(e: Exception, uri_or_path: str, *, writing: bool | None = True, fix: str | None = None):
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
    if type(e).__module__.startswith("azure."):
        return _classify_azure(e, where)
    if isinstance(e, ValueError) and str(e).startswith("unable to connect to account for"):  # adlfs' do_connect
        detail = str(e)[len("unable to connect to account for"):].strip()
        uri = where or "az://"
        if detail.startswith("Must provide"):
            return StorageRefused(f"no Azure Storage credentials for {uri}: set AZURE_STORAGE_CONNECTION_STRING "
                                  "(or AZURE_STORAGE_ACCOUNT_NAME with a key, SAS token or service principal); "
                                  "on Kubernetes, name a Secret in spec.storage.secretRef")
        return StorageRefused(f"the Azure Storage credentials for {uri} are not usable ({_first_line(detail)}): "
                              + _CREDENTIALS_FIX.format(variables=_credential_variables()))
    return None


def _classify_os(e: OSError, where: str | None, writing: bool | None, fix: str | None) -> StorageError | None:
    path = _public_name(where or e.filename or "")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left" if e.errno == errno.ENOSPC else "disk quota exceeded"
        where_text = f" writing {path}" if path else " on the device"
        return StorageUnavailable(f"{cause}{where_text}; {fix or 'free space or choose another output.uri'}")
    if e.errno == errno.EROFS:
        return StorageRefused(f"output not writable: {path or 'the output folder'} (read-only file system); "
                              f"{fix or 'choose another output.uri or fix its permissions'}")
    blocker = _file_in_the_way(e.filename or where or "") if e.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if e.errno == errno.ENOTDIR or (e.errno == errno.EEXIST and writing is not False and blocker):
        what = f"{_public_name(blocker)} is a file, not a folder" if blocker else "a part of it is a file, not a folder"
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


def _classify_azure(e: BaseException, where: str | None) -> StorageError | None:
    from azure.core import exceptions as ax

    response = getattr(e, "response", None)
    url = getattr(e, "parallelrun_url", None) or _strip_query(getattr(getattr(response, "request", None), "url", ""))
    endpoint = (getattr(e, "parallelrun_endpoint", None) or getattr(response, "parallelrun_endpoint", None)
                or _endpoint_of(url))
    uri = where or _az_uri(url, endpoint) or endpoint or "Azure Storage"
    status = getattr(e, "status_code", None)
    code = _error_code(e)
    if isinstance(e, ax.ClientAuthenticationError) or (isinstance(e, ax.HttpResponseError) and status in (401, 403)):
        advice = _CREDENTIALS_FIX.format(variables=_credential_variables())
        if status is None:  # raised before sending: the key cannot sign (not base64, ...)
            target = f" for {where or _az_uri(url, endpoint)}" if where or _az_uri(url, endpoint) else ""
            return StorageRefused(f"cannot sign Azure Storage requests{target} "
                                  f"({_first_line(getattr(e, 'message', None) or str(e))}): {advice}")
        extra = ("; the identity needs a data role such as Storage Blob Data Contributor"
                 if code == "AuthorizationPermissionMismatch" else "")
        return StorageRefused(f"Azure Storage refused access to {uri} ({status} {code or 'AuthorizationFailure'}): "
                              + advice + extra)
    if isinstance(e, ax.ResourceNotFoundError) and code == "ContainerNotFound":
        container = _container_of(uri)
        return StorageRefused(f"Azure Storage container {container!r} does not exist ({uri}); "
                              "create it or fix the URI")
    attempts = getattr(e, "parallelrun_attempts", None) or getattr(response, "parallelrun_attempts", None)
    after = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
    if isinstance(e, (ax.ServiceRequestError, ax.ServiceResponseError)):
        return StorageUnavailable(f"cannot reach Azure Storage at {endpoint or 'its endpoint'} for {uri}{after}: "
                                  f"{_short_cause(e)}; check the account name/endpoint and the network")
    if isinstance(e, ax.HttpResponseError) and status is not None and status >= 500:
        return StorageUnavailable(f"Azure Storage at {endpoint or 'its endpoint'} failed with {status} "
                                  f"{code or ''}".rstrip() + f" for {uri}{after}; try again later")
    return None


def _error_code(e: BaseException) -> str | None:
    code = getattr(e, "error_code", None)
    if code is None:
        response = getattr(e, "response", None)
        code = getattr(response, "headers", {}).get("x-ms-error-code") if response is not None else None
    return getattr(code, "value", code) if code is not None else None


def _short_cause(e: BaseException) -> str:
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
            return f"TLS error ({_first_line(str(cause))})"
        if isinstance(cause, TimeoutError) or type(cause).__name__ in ("ServerTimeoutError", "ConnectionTimeoutError",
                                                                        "SocketTimeoutError", "TimeoutError"):
            return "timed out"
    return _first_line(str(getattr(e, "message", None) or e))


def _chain_all(e: BaseException) -> Iterator[BaseException]:
    """Like _chain, also into azure-core's inner_exception and aiohttp's os_error."""
    todo, seen = [e], set()
    while todo:
        cause = todo.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        todo += [cause.__cause__, cause.__context__, getattr(cause, "inner_exception", None),
                 getattr(cause, "os_error", None)]


def _first_line(text: str, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _public_name(path: str) -> str:
    """A temporary file's name as the file it was to become."""
    folder, name = posixpath.split(path)
    match = _TEMPORARY.match(name)
    return posixpath.join(folder, match.group(1)) if match else path


def _strip_query(url: str | None) -> str:
    """A URL without its query string (where a SAS token would be)."""
    return (url or "").split("?", 1)[0].split("#", 1)[0]


def _endpoint_of(url: str) -> str | None:
    """The account endpoint of a blob URL: https://ACCOUNT.blob.core.windows.net, or an
    emulator's path-style http://HOST:PORT/ACCOUNT."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.netloc:
        return None
    base = f"{parts.scheme}://{parts.netloc}"
    if _path_style(parts.hostname or ""):
        account = parts.path.lstrip("/").split("/", 1)[0]
        return f"{base}/{account}" if account else base
    return base


def _path_style(host: str) -> bool:
    """Whether the account name is in the path (Azurite, an IP address, localhost), not the host."""
    return host in ("localhost", "azurite") or host.replace(".", "").isdigit() or ":" in host or "." not in host


def _az_uri(url: str, endpoint: str | None) -> str | None:
    """az://container/blob for a blob URL."""
    if not url:
        return None
    endpoint = endpoint or _endpoint_of(url)
    if endpoint and url.startswith(endpoint.rstrip("/") + "/"):
        rest = url[len(endpoint.rstrip("/")) + 1:]
        return f"az://{unquote(rest)}" if rest else None
    return None


def _container_of(uri: str) -> str:
    rest = uri.split("://", 1)[-1]
    return rest.split("@", 1)[0].split("/", 1)[0] if "://" in uri else rest.split("/", 1)[0]


# -- credentials never appear in a message ---------------------------------------------

_SECRET_VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
                     "AZURE_STORAGE_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "client_secret", "secret", "token")
_SECRET_FIELDS = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey|sig|client_secret|password)"
                            r"=([^;&\s'\"]+)")
_remembered: set[str] = set()
_remembered_lock = threading.Lock()


def _remember_secrets(options: Mapping[str, str]) -> None:
    """Secrets given explicitly (a job's Secret, in the operator), to keep them out of messages."""
    values = {str(options[k]) for k in _SECRET_OPTIONS if options.get(k)}
    if values:
        with _remembered_lock:
            _remembered.update(values)


def _redact(text: str) -> str:
    text = _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}=***", text)
    with _remembered_lock:
        secrets = set(_remembered)
    secrets.update(os.environ[k] for k in _SECRET_VARIABLES if os.environ.get(k))
    for secret in list(secrets):  # a connection string's key or signature may show up alone
        secrets.update(m.group(2) for m in _SECRET_FIELDS.finditer(secret))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


def _credential_variables() -> str:
    """The Azure credential variables this process has set (names only), for the advice."""
    names = [k for k in _OPTIONS[_AZURE] if os.environ.get(k)]
    return " / ".join(names) if names else "AZURE_STORAGE_CONNECTION_STRING"


# -- bounded retries for Azure ----------------------------------------------------------------


def retry_seconds() -> float:
    """How long one Azure request may be retried: PARALLELRUN_STORAGE_RETRY_SECONDS, default 30."""
    raw = os.environ.get(RETRY_SECONDS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
        if value < 0 or value != value:
            raise ValueError
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %g", RETRY_SECONDS_VARIABLE, raw, DEFAULT_RETRY_SECONDS)
        return DEFAULT_RETRY_SECONDS
    return value


def retry_waits(budget: float) -> list[float]:
    """The waits before each retry: 1, 2, 4, 8, 8... seconds, as many as fit in `budget`."""
    waits, total, wait = [], 0.0, 1.0
    while total + wait <= budget:
        waits.append(wait)
        total += wait
        wait = min(wait * 2, 8.0)
    return waits


@functools.lru_cache(maxsize=None)
def _bounded_retry_class():
    from azure.storage.blob.aio import ExponentialRetry

    class BoundedRetry(ExponentialRetry):
        """azure-storage-blob's retry (connection errors, 408, 5xx; never 4xx such as 403),
        ending once `budget` seconds are spent, with a warning before each retry."""

        def __init__(self, budget: float, endpoint: str):
            self.waits = retry_waits(budget)
            super().__init__(initial_backoff=1, increment_base=2, retry_total=len(self.waits), random_jitter_range=0)
            self.connect_retries = self.read_retries = self.status_retries = len(self.waits)
            self.budget, self.endpoint = budget, endpoint
            self.connect_timeout = min(20.0, max(2.0, budget / 3))  # a dropped SYN must not take 20 s a try

        def configure_retries(self, request):
            request.context.options.setdefault("connection_timeout", self.connect_timeout)
            settings = super().configure_retries(request)
            settings.update(started=time.monotonic(), failures=0, wait=0.0)
            return settings

        def get_backoff_time(self, settings) -> float:
            return settings.get("wait", 0.0)

        def increment(self, settings, request, response=None, error=None) -> bool:
            retry = super().increment(settings, request, response=response, error=error)
            settings["failures"] += 1
            failures = settings["failures"]
            if retry:
                wait = self.waits[min(failures, len(self.waits)) - 1] * random.uniform(0.75, 1.0)
                if time.monotonic() - settings["started"] + wait > self.budget + 1.0:  # slow attempts (timeouts)
                    retry = False
                else:
                    settings["wait"] = wait
            for failed in (error, response):  # for storage_error: how often, and where
                if failed is not None:
                    with contextlib.suppress(AttributeError):
                        failed.parallelrun_attempts = failures
                        failed.parallelrun_endpoint = self.endpoint
                        failed.parallelrun_url = _strip_query(getattr(request, "url", ""))
            if retry:
                what = (f"storage unreachable ({_short_cause(error)})" if error is not None else
                        f"storage answered {getattr(response, 'status_code', '?')} {getattr(response, 'reason', '')}".rstrip())
                log.warning("%s, retrying (attempt %d/%d in %.0fs): %s", _redact(what), failures + 1,
                            len(self.waits) + 1, settings["wait"], self.endpoint)
            return retry

    return BoundedRetry


_bounding_lock = threading.Lock()


def _bound_retries(fs) -> None:
    """Give an adlfs filesystem's client the bounded retry policy (adlfs passes no retry
    options to azure-storage-blob, whose default retries a dead endpoint for minutes).

    The policy sits in the client's pipeline, which every container and blob client
    made from it shares; it is swapped in place (once per client and budget)."""
    client = getattr(fs, "service_client", None)
    if client is None:
        return
    budget = retry_seconds()
    try:
        cls = _bounded_retry_class()
        with _bounding_lock:
            config, policies = client._config, client._pipeline._impl_policies
            current = config.retry_policy
            if isinstance(current, cls) and current.budget == budget:
                return
            index = next(i for i, p in enumerate(policies) if p is current)
            endpoint = _strip_query(getattr(client, "primary_endpoint", "") or getattr(client, "url", "")).rstrip("/")
            bounded = cls(budget, endpoint)
            bounded.next = current.next
            if index:
                policies[index - 1].next = bounded
            policies[index] = bounded
            config.retry_policy = bounded
    except (ImportError, AttributeError, StopIteration) as e:  # another azure-storage-blob: its own retries
        log.debug("cannot bound the Azure retries of %r: %s", fs, e)
