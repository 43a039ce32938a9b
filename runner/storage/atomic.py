"""Publishing a file whole or not at all, creating one only where none is (the conditional write
claims and leases rest on), and clearing what interrupted writes left."""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .faults import raise_classified
from .filesystems import display_path, is_local
from .temporaries import TEMPORARY, temporary_name

if TYPE_CHECKING:
    import fsspec

log = logging.getLogger("parallelrun.storage")

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
        raise_classified(e, display_path(fs, path))


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
        raise_classified(e, display_path(fs, path))


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
        match = TEMPORARY.match(posixpath.basename(entry.rstrip("/")))
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


def create_if_absent(fs, path: str, data: bytes) -> bool:
    """Write `path` whole if nobody has; False when it exists (whoever wrote it)."""
    if not is_local(fs):
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        return True
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, path)  # O_EXCL's guarantee, for a file that appears whole
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)
    return True
