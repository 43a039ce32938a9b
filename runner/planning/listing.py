"""Listing the input once: a folder (local, fsspec, Azure Blob) or a manifest of files, each file stamped
with its size and version."""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from stat import S_ISDIR, S_ISREG

from ..contract import URI_SCHEME
from ..spec import JobSpec
from ..storage import filesystem, is_local, protocol_of, strip_protocol
from .model import InputFile, Listing, PlanError


def list_input(spec: JobSpec, env: Mapping[str, str] | None = None) -> tuple[str, list[InputFile]]:
    """The input root URI and its matching files, sorted by path (a manifest's: in its order).

    Files and folders whose names start with `_` or `.` are skipped (Spark's and
    Arrow's rule for markers such as `_SUCCESS`, and this project's `_parallelrun`),
    and so is this job's own output when it lies inside the input.
    """
    root, listing = list_files(spec, env)
    return root, listing.files()


def list_files(spec: JobSpec, env: Mapping[str, str] | None) -> tuple[str, Listing]:
    """list_input's root and files, as a Listing."""
    if spec.input.manifest:
        root, files = _manifest_input(spec.input.manifest, env)
        return root, Listing.of(files)
    uri = spec.input.uri
    assert uri is not None  # the spec has an input.uri or an input.manifest
    fs, root = filesystem(uri, env)
    keep = _keep(spec, root)
    try:
        if fs.isfile(root):
            version: int | str | None
            if is_local(fs):  # the version a reader compares: mtime in ns
                stat = os.stat(root)
                size, version = stat.st_size, stat.st_mtime_ns
            else:
                info = fs.info(root)
                size, version = int(info.get("size") or 0), file_version(info)
            return _parent_uri(uri), Listing([posixpath.basename(root)], [size], [version])
        if is_local(fs):
            listing = _local_listing(root, keep)
        else:
            listing = Listing.of(sorted(f for f in _found_files(fs, root) if keep is None or keep(f.rel)))
    except FileNotFoundError:
        raise PlanError(f"spec.input.uri: {uri} does not exist") from None
    except OSError as e:
        raise PlanError(f"spec.input.uri: cannot list {uri}: {e}") from e
    if not listing:
        pattern = f" matching {spec.input.pattern!r}" if spec.input.pattern else ""
        raise PlanError(f"spec.input.uri: no input files{pattern} under {uri}")
    return uri.rstrip("/") + "/", listing


def _keep(spec: JobSpec, root: str):
    """Whether a relative path is input: it matches the pattern and is not this job's output;
    None when every file is."""
    matches, own_output = _matcher(spec.input.pattern), _own_output(spec, root)
    if matches is None and own_output is None:
        return None
    return lambda rel: (matches is None or matches(rel)) and (own_output is None or not own_output(rel))


def manifest_entries(text: str, manifest_uri: str) -> list[str]:
    """The input URIs a manifest lists, in its order: one a line, blank lines skipped,
    surrounding spaces stripped. A relative path is relative to the manifest's folder."""
    scheme, sep, path = manifest_uri.partition("://") if "://" in manifest_uri else ("", "", manifest_uri)
    folder = posixpath.dirname(path) if sep else os.path.dirname(os.path.abspath(path))
    entries = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry:
            continue
        if not URI_SCHEME.match(entry) and not entry.startswith("/"):
            entry = scheme + sep + posixpath.normpath(posixpath.join(folder, entry))
        entries.append(entry)
    return entries


def _split_root(entries: list[str]) -> tuple[str, list[str]]:
    """The deepest folder holding every entry (as a URI ending in /) and each entry's path under it."""
    stores = {_store(protocol_of(e)) for e in entries}
    if len(stores) > 1:
        raise PlanError(f"spec.input.manifest: lists files of {len(stores)} stores ({', '.join(sorted(stores))}); "
                        "one manifest takes the files of one store")
    if stores == {"file"}:
        prefix, paths = "", [e.removeprefix("file://") for e in entries]
    else:
        prefix = entries[0].split("://", 1)[0] + "://"
        if any(not e.startswith(prefix) for e in entries):
            raise PlanError(f"spec.input.manifest: mixes URI schemes; write every line alike, e.g. {entries[0]}")
        paths = [e[len(prefix):] for e in entries]
    try:
        common = posixpath.commonpath([posixpath.dirname(p) for p in paths])
    except ValueError:  # absolute and relative paths
        common = ""
    if not common:
        raise PlanError("spec.input.manifest: its files share no folder (another container or bucket?); "
                        "one manifest takes the files of one container")
    base = common.rstrip("/") + "/"
    return prefix + base, [p[len(base):] for p in paths]


def _manifest_input(manifest: str, env: Mapping[str, str] | None) -> tuple[str, list[InputFile]]:
    """The root and the files a manifest lists, stamped, in the manifest's order."""
    fs, path = filesystem(manifest, env)
    try:
        with fs.open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")  # a byte order mark, as some editors write, is no path
    except FileNotFoundError:
        raise PlanError(f"spec.input.manifest: {manifest} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(f"spec.input.manifest: cannot read {manifest}: {e}") from e
    entries = manifest_entries(text, manifest)
    if not entries:
        raise PlanError(f"spec.input.manifest: {manifest} lists no files; give one input URI a line")
    root, rels = _split_root(entries)
    seen: dict[str, int] = {}
    for line, rel in enumerate(rels, 1):
        if seen.setdefault(rel, line) != line:
            raise PlanError(f"spec.input.manifest: {entries[line - 1]} is listed twice (lines {seen[rel]} and "
                            f"{line}); each file is one input")
    fs, base = filesystem(root, env)
    stamps = _local_stamps if is_local(fs) else _remote_stamps
    files = []
    for entry, rel, stamp in zip(entries, rels, stamps(fs, [f"{base}/{rel}" for rel in rels])):
        if isinstance(stamp, str):
            raise PlanError(f"spec.input.manifest: {entry} {stamp}; fix the manifest {manifest}")
        files.append(InputFile(rel, *stamp))
    return root, files


def _local_stamps(fs, paths: list[str]) -> Iterator[tuple[int, int] | str]:
    """(size, mtime in ns) of each local file, or why it is no input file."""
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            yield "does not exist"
            continue
        except OSError as e:
            yield f"cannot be read: {e}"
            continue
        yield "is a folder, not a file" if S_ISDIR(stat.st_mode) else (stat.st_size, stat.st_mtime_ns)


def _remote_stamps(fs, paths: list[str]) -> list[tuple[int, str | None] | str]:
    """(size, version) of each stored object, asked concurrently where the store allows it."""
    if getattr(fs, "async_impl", False):
        from fsspec.asyn import _run_coros_in_chunks, sync

        infos = sync(fs.loop, _run_coros_in_chunks, [fs._info(p) for p in paths], batch_size=64,
                     return_exceptions=True)
    else:
        infos = []
        for p in paths:
            try:
                infos.append(fs.info(p))
            except Exception as e:  # noqa: BLE001 - judged below, as the async results are
                infos.append(e)
    stamps: list[tuple[int, str | None] | str] = []
    for info in infos:
        if isinstance(info, FileNotFoundError):
            stamps.append("does not exist")
        elif isinstance(info, BaseException):
            raise info
        elif info.get("type") == "directory":
            stamps.append("is a folder, not a file")
        else:
            stamps.append((int(info.get("size") or 0), file_version(info)))
    return stamps


def _store(protocol: str) -> str:
    """Protocols that name the same store (adlfs serves az://, abfs:// and abfss:// alike)."""
    return "az" if protocol in ("az", "abfs", "abfss") else protocol


def _own_output(spec: JobSpec, input_root: str):
    """Whether a relative input path is this job's output: its folder when that lies
    inside the input, or its final file (and the one an earlier run left) beside the input;
    None when the output cannot be among the input."""
    protocol = protocol_of(spec.output.uri)
    if spec.input.uri is None or _store(protocol) != _store(protocol_of(spec.input.uri)):
        return None
    out = strip_protocol(spec.output.uri).rstrip("/")
    base = input_root.rstrip("/")
    if out == base:
        names = {spec.output.file_name, spec.output.file_name + ".previous"}
        return lambda rel: rel in names
    if out.startswith(base + "/"):
        prefix = out[len(base) + 1:] + "/"
        return lambda rel: rel.startswith(prefix)
    return None


def _matcher(pattern: str | None):
    """Whether a relative path, or its file name, matches the glob `pattern` (None: no pattern)."""
    if not pattern:
        return None
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda rel: match(rel) is not None or match(posixpath.basename(rel)) is not None


def file_version(info: dict) -> str | None:
    """What changes when a stored object is rewritten: its ETag, else its modification time."""
    for key in ("etag", "ETag", "mtime", "last_modified", "LastModified", "updated", "created"):
        if info.get(key) is not None:
            return str(info[key]).strip('"')
    return None


def _found_files(fs, root: str) -> Iterator[InputFile]:
    """The files under `root` of a remote store, but those under `_` or `.` names
    (a local walk does not enter those folders at all)."""
    found: Iterable[tuple[str, int, str | None]]
    if type(fs).__name__ == "AzureBlobFileSystem":  # adlfs, for az:// and abfs://
        found = _azure_blobs(fs, root)
    else:
        prefix = root.rstrip("/") + "/"
        found = ((path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path), info.get("size"),
                  file_version(info))
                 for path, info in fs.find(root, detail=True).items() if info.get("type") != "directory")
    for rel, size, version in found:
        if not any(part.startswith(("_", ".")) for part in rel.split("/")):
            yield InputFile(rel, int(size or 0), version)


def _azure_blobs(fs, root: str) -> list[tuple[str, int, str]]:
    """The blobs under `root`, page by page, as (relative name, size, ETag).

    adlfs' find holds every blob's full properties until the listing ends: about
    3 KiB a blob, 3 GiB for a million (measured on Azurite). This keeps a name and
    a size (0.1 KiB). Folder markers of accounts with a hierarchical namespace
    (metadata hdi_isfolder) are not files.
    """
    from azure.core.exceptions import ResourceNotFoundError
    from fsspec.asyn import sync

    container, prefix, _ = fs.split_path(root.rstrip("/") + "/")

    async def listing() -> list[tuple[str, int, str]]:
        found = []
        async with fs.service_client.get_container_client(container) as client:
            async for blob in client.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
                if (blob.metadata or {}).get("hdi_isfolder") != "true":
                    found.append((blob.name[len(prefix):], blob.size, blob.etag.strip('"')))
        return found

    try:
        return sync(fs.loop, listing)
    except ResourceNotFoundError as e:
        raise FileNotFoundError(f"{root}: {e.reason}") from e


def _local_listing(root: str, keep) -> Listing:
    """A local folder's files in path order, at a fraction of fsspec's find's time and memory
    (no info dict per file). `_` and `.` folders are not entered; a link to a folder is
    followed (fsspec would list it as a file), unless it leads back up.

    Each folder's names are sorted, a folder's with a `/` after it, and folders entered
    where they sort: the walk yields the paths in sorted order without sorting them all at
    the end. A folder's files are stamped in runs (_stamp), straight into the listing."""
    listing = Listing([], [], [])
    stack: list[tuple[str, int, frozenset, Iterator]] = []  # folder, its descriptor, above it, its runs
    try:
        _enter(stack, root, "", frozenset(), keep)
        while stack:
            folder, fd, above, runs = stack[-1]
            for run in runs:
                if type(run) is list:
                    _stamp(run, len(folder), fd, listing)
                    continue
                identity = _identity(os.stat(run, dir_fd=fd))
                if identity not in above:
                    _enter(stack, f"{root}/{folder}{run}", f"{folder}{run}/", above, keep, identity)
                    break
            else:
                os.close(stack.pop()[1])
    finally:
        for _, fd, _, _ in stack:
            os.close(fd)
    return listing


def _enter(stack: list, path: str, folder: str, above: frozenset, keep, identity=None) -> None:
    """Open the folder at `path` (`folder`: its path under the root, with a `/`) onto the walk's stack."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        identity = identity or _identity(os.fstat(fd))
        stack.append((folder, fd, above | {identity}, iter(_runs(fd, folder, keep))))
    except BaseException:
        os.close(fd)
        raise


def _runs(fd: int, folder: str, keep) -> list[list[str] | str]:
    """A folder's entries but `_` and `.` names, in sort order (a folder's name with `/` after it):
    runs of its files' paths under the root that `keep` keeps (lists), between the names of
    its folders (strings)."""
    try:
        with os.scandir(fd) as found:
            keys = [entry.name + "/" if entry.is_dir() else entry.name
                    for entry in found if not entry.name.startswith(("_", "."))]
    except OSError as e:  # a link in a loop: listed as a file (_stamp), the folder scanned again
        if e.errno != errno.ELOOP:
            raise
        with os.scandir(fd) as found:
            keys = [entry.name + "/" if _is_folder(entry) else entry.name
                    for entry in found if not entry.name.startswith(("_", "."))]
    keys.sort()
    runs: list[list[str] | str] = []
    files: list[str] = []
    for key in keys:
        if key[-1] == "/":
            if files:
                runs.append(files)
                files = []
            runs.append(key[:-1])
        else:
            files.append(folder + key)
    if files:
        runs.append(files)
    if keep is not None:
        runs = [run if type(run) is str else [rel for rel in run if keep(rel)] for run in runs]
    return runs


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link in a loop
        return False


def _stamp(rels: list[str], skip: int, fd: int, listing: Listing) -> None:
    """Append files of the folder open as `fd` (their paths under the root, the folder's the
    first `skip` characters) to the listing, with their size and mtime in ns. A dangling link
    (or a file removed since it was listed) is listed, as fsspec does, with size 0 and no
    version: reading it fails. So is a link in a loop, and an entry that is not a regular file
    (a fifo, socket or device): each becomes a failed item, the run goes on."""
    stat, sizes, versions = os.stat, listing.sizes, listing.versions
    for rel in rels:
        try:
            found = stat(rel[skip:], dir_fd=fd)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ELOOP):
                raise
            found = None
        if found is None or not S_ISREG(found.st_mode):
            sizes.append(0)
            versions.append(None)
            continue
        sizes.append(found.st_size)
        versions.append(found.st_mtime_ns)
    listing.rels.extend(rels)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _parent_uri(uri: str) -> str:
    return uri.rsplit("/", 1)[0] + "/" if "/" in uri.split("://", 1)[-1] else ""
