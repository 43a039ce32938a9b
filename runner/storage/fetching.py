"""A local copy of a code, model or side-input URI, for a pod or a local run."""

from __future__ import annotations

import errno
import os
import posixpath
import shutil

from .faults import StorageError, raise_classified
from .filesystems import filesystem, is_local


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
            raise_classified(e, dest, fix="free space there, or point TMPDIR or PARALLELRUN_SCRATCH elsewhere")
        local_file = e.filename if isinstance(e, OSError) else None  # the copy under `dest`, not the source
        raise_classified(e, str(local_file) if local_file else uri, writing=bool(local_file))


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
