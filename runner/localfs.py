"""The local disk without importing fsspec.

fsspec's import costs 0.05-0.07 s (asyncio, importlib.metadata, its registry), a tenth
of a small local job. LocalFS serves local paths with fsspec's LocalFileSystem
semantics for what the runner calls often (exists, isfile, isdir, size, makedirs,
open, cat_file, pipe_file, ls without details, rm, rm_file, mv); any other method is
fsspec's own, imported on first use. storage.filesystem() hands it out for plain paths
and file:// URIs; storage.is_local() knows both kinds.
"""

from __future__ import annotations

import io
import os
import shutil

LOCAL_PROTOCOLS = ("file", "local")


def local_path(uri: str) -> str | None:
    """`uri` as a path for LocalFS (as fsspec's LocalFileSystem strips it), or None when it
    is not a plain path or a file:// URI: another store, a chained URL, or any name with a
    colon, which fsspec parses itself."""
    for prefix in ("file://", "local://"):
        if uri.startswith(prefix):
            return _strip(uri[len(prefix):])
    return None if ":" in uri else _strip(uri)


def _strip(path: str) -> str:
    """fsspec's make_path_posix and trailing-slash rule for a path without protocol."""
    path = os.fspath(path)
    if not path.startswith("/"):
        if path.startswith("~"):
            path = os.path.expanduser(path)
        else:
            path = f"{os.getcwd()}/{'' if path == '.' else path.removeprefix('./')}"
    return path.rstrip("/") or "/"


class LocalFS:
    """fsspec's LocalFileSystem for the calls the runner makes, without fsspec."""

    protocol = LOCAL_PROTOCOLS
    root_marker = "/"
    sep = "/"

    @classmethod
    def _strip_protocol(cls, path) -> str:
        found = local_path(os.fspath(path))
        return found if found is not None else _strip(path)

    def unstrip_protocol(self, name: str) -> str:
        return f"file://{self._strip_protocol(name)}"

    def exists(self, path, **kwargs) -> bool:
        return os.path.exists(self._strip_protocol(path))

    def isfile(self, path) -> bool:
        return os.path.isfile(self._strip_protocol(path))

    def isdir(self, path) -> bool:
        return os.path.isdir(self._strip_protocol(path))

    def size(self, path) -> int:
        return os.stat(self._strip_protocol(path)).st_size

    def makedirs(self, path, exist_ok: bool = False) -> None:
        os.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def open(self, path, mode: str = "rb", **kwargs):
        """A file object; text modes take encoding, errors and newline as fsspec's do."""
        text = {k: kwargs.pop(k) for k in ("encoding", "errors", "newline") if k in kwargs}
        kwargs.pop("block_size", None)
        if kwargs:  # compression, caching...: fsspec's own
            return self.fsspec().open(path, mode, **text, **kwargs)
        if "b" in mode:
            return open(self._strip_protocol(path), mode)
        return io.TextIOWrapper(open(self._strip_protocol(path), mode.replace("t", "") + "b"), **text)

    def cat_file(self, path, start: int | None = None, end: int | None = None, **kwargs) -> bytes:
        with open(self._strip_protocol(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size if (start is not None and start < 0) or (end is not None and end < 0) \
                else 0  # only a negative offset, counted from the end, needs it
            if start is not None:
                f.seek(start if start >= 0 else max(0, size + start))
            if end is not None:
                return f.read((end if end >= 0 else size + end) - f.tell())
            return f.read()

    def pipe_file(self, path, value: bytes, mode: str = "overwrite", **kwargs) -> None:
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        with open(self._strip_protocol(path), "wb") as f:
            f.write(value)

    def ls(self, path, detail: bool = False, **kwargs):
        if detail:
            return self.fsspec().ls(path, detail=True, **kwargs)
        path = self._strip_protocol(path)
        if not os.path.isdir(path):
            os.stat(path)  # FileNotFoundError, as fsspec's info() raises
            return [path]
        with os.scandir(path) as entries:
            return [self._strip_protocol(e.path) for e in entries]

    def rm_file(self, path) -> None:
        os.remove(self._strip_protocol(path))

    def rm(self, path, recursive: bool = False, maxdepth=None) -> None:
        for p in path if isinstance(path, list) else [path]:
            p = self._strip_protocol(p)
            if os.path.isdir(p) and not os.path.islink(p):
                if not recursive:
                    raise ValueError("Cannot delete directory, set recursive=True")
                if os.path.abspath(p) == os.getcwd():
                    raise ValueError("Cannot delete current working directory")
                shutil.rmtree(p)
            else:
                os.remove(p)

    def mv(self, path1, path2, recursive: bool = True, **kwargs) -> None:
        shutil.move(self._strip_protocol(path1), self._strip_protocol(path2))

    @staticmethod
    def fsspec():
        """fsspec's LocalFileSystem (a cached instance): for what LocalFS does not do itself."""
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.fsspec(), name)

    def __reduce__(self):
        return LocalFS, ()

