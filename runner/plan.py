"""Planning: list the input once, cut it into mini-batches, assign them to shards.

The plan is the single source of truth of a run: every shard reads its part of it and
nobody lists the input again, so input that changes mid-run cannot lose or double an
item. Mini-batches never span files (except a partition, which is one key's rows
across files); large tabular files are split (csv/jsonl by byte ranges on line
boundaries, parquet by row ranges aligned to row groups). Shards are contiguous runs
of mini-batches of about equal bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import fnmatch
import functools
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import struct
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise, repeat
from stat import S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK
from typing import TYPE_CHECKING, NamedTuple

from .contract import URI_SCHEME, PermanentError
from .formats import arrow_dataset, compression_of, has_header, quote_of, raw_lines
from .layout import Layout
from .records import ShardRange
from .schemas import to_header
from .spec import InputFormat, InputType, JobSpec
from .storage import filesystem, is_local, protocol_of, strip_protocol, write_atomic

if TYPE_CHECKING:
    import pyarrow as pa

PLAN_VERSION = 1
log = logging.getLogger(__name__)
_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options makes a new encoder per call


class PlanError(PermanentError, ValueError):
    """The input cannot be planned (nothing matches, unreadable file...): a user's mistake."""


class InputChanged(PlanError):
    """A resumed run's input, model or side inputs are not what the run was planned with."""


class InputFile(NamedTuple):
    """A listed input file: path relative to the input root, size, and version (mtime in
    ns for a local file, the ETag or modification time of a stored object; None if unknown)."""

    rel: str
    size: int
    version: int | str | None


@dataclass(frozen=True, slots=True)
class MiniBatch:
    """One unit of work. Paths are relative to the plan's input root.

    files: `files` (a list of paths); tabular: `file` with `rows` [start, stop) for
    parquet or `bytes` [start, stop) for csv/jsonl; a partition: `files` with `key`
    (column → value). `items` is None where only reading tells (csv/jsonl by size).
    `stamps` has, for each of `paths`, the file's size and version when it was planned
    (version: mtime in ns, or the store's ETag), flat: (size0, version0, size1, ...),
    so a reader sees a file that changed (`file_stamps` pairs them up). `first_row`: tabular, the
    number of rows of the mini-batches before it in plan order, where all of them are known.
    """

    id: int
    size: int
    items: int | None
    files: tuple[str, ...] | None = None
    file: str | None = None
    rows: tuple[int, int] | None = None
    bytes: tuple[int, int] | None = None
    key: dict | None = None
    stamps: tuple[int | str | None, ...] | None = None
    first_row: int | None = None

    def to_json(self) -> str:
        # Field by field: dataclasses.asdict deep-copies, 3x slower over a million mini-batches.
        return _JSON.encode({name: value for name in self.__slots__ if (value := getattr(self, name)) is not None})

    @classmethod
    def from_json(cls, line: str) -> MiniBatch:
        return cls._from_dict(json.loads(line))

    @classmethod
    def many_from_json(cls, lines: list[str]) -> list[MiniBatch]:
        """Lines of a plan, parsed at once as one JSON array (half the time of a parse each)."""
        return [cls._from_dict(d) for d in json.loads(f"[{','.join(lines)}]")]

    @classmethod
    def _from_dict(cls, d: dict) -> MiniBatch:
        # Positional, each field looked up: cls(**d) took twice as long, a cost a plan of
        # a million mini-batches pays in every shard and worker.
        get = d.get
        files, rows, bytes_, stamps = get("files"), get("rows"), get("bytes"), get("stamps")
        return cls(d["id"], d["size"], get("items"), None if files is None else tuple(files), get("file"),
                   None if rows is None else tuple(rows), None if bytes_ is None else tuple(bytes_), get("key"),
                   None if stamps is None else tuple(stamps), get("first_row"))

    @property
    def paths(self) -> tuple[str, ...]:
        return self.files if self.files is not None else (self.file,)

    def file_stamps(self) -> list[tuple | None]:
        """(size, version) of each of `paths` when planned; None each where the plan has none."""
        if self.stamps is None:
            return [None] * len(self.paths)
        return list(zip(self.stamps[0::2], self.stamps[1::2]))


@dataclass
class Plan:
    """The plan header; `mini_batches` is filled when planned here, not when read back."""

    input_uri: str  # the root the mini-batches' paths are relative to
    input_type: InputType
    input_format: InputFormat | None
    options: dict
    shards: list[ShardRange]
    total_mini_batches: int
    total_items: int | None
    total_bytes: int
    mini_batches: Sequence[MiniBatch] | None = None  # a list, or FileBatches
    sources: dict | None = None  # {"model": version, "sideInputs": {name: version}} when planned
    schema: dict | None = None  # the columns every table is read with (schemas.to_header; None: as each file has them)
    # Mini-batches per chunk, the unit pods claim (claims.py); None: chunk_size()'s; 0: a plan made
    # before chunks, whose shards are one chunk each
    chunk_mini_batches: int | None = None

    def __post_init__(self):
        if self.chunk_mini_batches is None:
            self.chunk_mini_batches = chunk_size(self.total_mini_batches, len(self.shards))

    def header(self) -> dict:
        inp = {"uri": self.input_uri, "type": self.input_type, "format": self.input_format, "options": self.options}
        if self.schema is not None:
            inp["schema"] = self.schema
        return {"version": PLAN_VERSION, "input": inp,
                "totals": {"miniBatches": self.total_mini_batches, "items": self.total_items,
                           "bytes": self.total_bytes},
                "shards": [s.to_dict() for s in self.shards], "chunkMiniBatches": self.chunk_mini_batches,
                "sources": self.sources}

    @classmethod
    def from_header(cls, d: dict) -> Plan:
        return cls(input_uri=d["input"]["uri"], input_type=d["input"]["type"],
                   input_format=d["input"]["format"], options=d["input"]["options"],
                   shards=[ShardRange.from_dict(s) for s in d["shards"]],
                   total_mini_batches=d["totals"]["miniBatches"], total_items=d["totals"]["items"],
                   total_bytes=d["totals"]["bytes"], sources=d.get("sources"), schema=d["input"].get("schema"),
                   chunk_mini_batches=d.get("chunkMiniBatches", 0))

    def absolute(self, relative: str) -> str:
        """The URI of a mini-batch path."""
        return f"{self.input_uri.rstrip('/')}/{relative}" if relative else self.input_uri


# -- listing -------------------------------------------------------------------


def list_input(spec: JobSpec, env: Mapping[str, str] | None = None) -> tuple[str, list[InputFile]]:
    """The input root URI and its matching files, sorted by path (a manifest's: in its order).

    Files and folders whose names start with `_` or `.` are skipped (Spark's and
    Arrow's rule for markers such as `_SUCCESS`, and this project's `_parallelrun`),
    and so is this job's own output when it lies inside the input.
    """
    root, listing = _list(spec, env)
    return root, listing.files()


@dataclass
class Listing:
    """Listed input files as three columns, in plan order: a million InputFile tuples
    would cost several times the time and memory."""

    rels: list[str]
    sizes: list[int]
    versions: list[int | str | None]

    @classmethod
    def of(cls, files: list[InputFile]) -> Listing:
        return cls([f.rel for f in files], [f.size for f in files], [f.version for f in files])

    def __len__(self) -> int:
        return len(self.rels)

    def files(self) -> list[InputFile]:
        return list(map(InputFile, self.rels, self.sizes, self.versions))


def _list(spec: JobSpec, env: Mapping[str, str] | None) -> tuple[str, Listing]:
    """list_input's root and files, as a Listing."""
    if spec.input.manifest:
        root, files = _manifest_input(spec.input.manifest, env)
        return root, Listing.of(files)
    uri = spec.input.uri
    fs, root = filesystem(uri, env)
    keep = _keep(spec, root)
    try:
        if fs.isfile(root):
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


# -- manifests ------------------------------------------------------------------


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
    stamps = []
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
    if _store(protocol) != _store(protocol_of(spec.input.uri)):
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


# -- cutting into mini-batches -----------------------------------------------


def make_plan(spec: JobSpec, env: Mapping[str, str] | None = None) -> Plan:
    """List and cut the input of `spec` into mini-batches and shards."""
    root, listing = _list(spec, env)
    if spec.input.type == "files":
        mini_batches = FileBatches(listing, spec.mini_batch_size.value)
        return Plan(input_uri=root, input_type="files", input_format=None, options=dict(spec.input.options),
                    shards=shard(mini_batches, spec.node_count), total_mini_batches=len(mini_batches),
                    total_items=len(listing), total_bytes=sum(listing.sizes), mini_batches=mini_batches,
                    sources=source_versions(spec, env))
    files = _with_rows(root, listing.files(), env)
    listing = Listing.of(files)  # without the entries that hold no rows
    fs, base = filesystem(root, env)
    typed = spec.input.format in ("csv", "jsonl") and not raw_lines(spec.input.options)
    types = _text_schema(spec, fs, root, base, listing) if typed else None
    if spec.code.openai:
        _check_custom_ids(fs, root, base, listing)
    if spec.partition_keys:
        batches, schema = _partition_batches(spec, root, files, env, types)
    else:
        schema, row_groups = types, _RowGroupRows()
        cut = {"parquet": functools.partial(_parquet_batches, row_groups=row_groups), "csv": _text_batches,
               "jsonl": _text_batches}[spec.input.format]
        batches = []
        for f in files:
            try:
                batches.extend(cut(spec, fs, f"{base}/{f.rel}", f.rel, f.size))
            except (OSError, ValueError) as e:
                raise PlanError(f"spec.input: cannot read {root}{f.rel} as {spec.input.format}: {e}") from e
        if spec.input.format == "parquet":
            schema = row_groups.unified(fs, base, root, listing.rels)
    stamps = {f.rel: (f.size, f.version) for f in files}
    mini_batches = []
    first_row: int | None = 0  # None from the first mini-batch whose rows only reading tells
    for i, b in enumerate(batches):
        mini_batches.append(dataclasses.replace(b, id=i, stamps=tuple(x for p in b.paths for x in stamps[p]),
                                                first_row=first_row))
        first_row = None if first_row is None or b.items is None else first_row + b.items
    items = None if any(b.items is None for b in mini_batches) else sum(b.items for b in mini_batches)
    return Plan(input_uri=root, input_type=spec.input.type, input_format=spec.input.format,
                options=dict(spec.input.options), shards=shard(mini_batches, spec.node_count),
                total_mini_batches=len(mini_batches), total_items=items,
                total_bytes=sum(b.size for b in mini_batches), mini_batches=mini_batches,
                sources=source_versions(spec, env), schema=to_header(schema) if schema is not None else None)


def _check_custom_ids(fs, root: str, base: str, listing: Listing) -> None:
    """OpenAI Batch JSONL: every custom_id once (custom_ids.py)."""
    from .custom_ids import DuplicateCustomId, check_unique

    try:
        check_unique(fs, base, root, listing.rels)
    except DuplicateCustomId as e:
        raise PlanError(f"spec.input: {e}") from None
    except (OSError, ValueError) as e:
        raise PlanError(f"spec.input: cannot read {root} as OpenAI Batch JSONL: {e}") from e


def _text_schema(spec: JobSpec, fs, root: str, base: str, listing: Listing) -> pa.Schema:
    """The column types of a csv/jsonl input (column_types.py)."""
    from .column_types import infer

    try:
        return infer(spec.input.format, spec.input.options, fs, base, listing.rels, listing.sizes)
    except (OSError, ValueError) as e:
        raise PlanError(f"spec.input: cannot infer the column types of {root} as {spec.input.format}: {e}") from e


def _with_rows(root: str, files: list[InputFile], env: Mapping[str, str] | None) -> list[InputFile]:
    """Tabular input: the files that may hold rows. A local entry the listing could not stamp
    (a dangling link, a link in a loop, a fifo, socket or device) holds none to cut: it is
    skipped with a warning naming it, and the run goes on."""
    if all(f.version is not None for f in files) or not is_local(filesystem(root, env)[0]):
        return files
    base = strip_protocol(root).rstrip("/")
    for f in files:
        if f.version is None:
            log.warning("spec.input.uri: %s/%s skipped: %s, not a file with rows", base, f.rel,
                        _odd_entry(f"{base}/{f.rel}"))
    kept = [f for f in files if f.version is not None]
    if not kept:
        raise PlanError(f"spec.input.uri: no readable input files under {root}")
    return kept


def _odd_entry(path: str) -> str:
    """What a local entry that is no regular file is, in words."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return "a link in a loop" if e.errno == errno.ELOOP else "a dangling link" if os.path.islink(path) \
            else f"unreadable ({e.strerror})"
    return "a fifo" if S_ISFIFO(mode) else "a socket" if S_ISSOCK(mode) else "a device" if not S_ISREG(mode) \
        else "changed while listed"


class FileBatches(Sequence):
    """The mini-batches of a files input: `count` listed files each, in listing order.

    Made on demand from the listing's columns, and written to the plan as JSON lines
    straight from them: a million MiniBatch objects would double planning's time."""

    def __init__(self, listing: Listing, count: int):
        self.listing, self.count = listing, count
        sizes = listing.sizes
        self.sizes = sizes if count == 1 else [sum(sizes[a:a + count]) for a in range(0, len(sizes), count)]

    def items_between(self, start: int, stop: int) -> int:
        """The files of mini-batches start..stop-1."""
        return min(stop * self.count, len(self.listing)) - min(start * self.count, len(self.listing))

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1 or self.count != 1:
                return [self[i] for i in range(start, stop, step)]
            rels, sizes, versions = self.listing.rels, self.listing.sizes, self.listing.versions
            return [MiniBatch(i, size, 1, (rel,), None, None, None, None, (size, version))  # in one pass
                    for i, rel, size, version in zip(range(start, stop), rels[start:stop], sizes[start:stop],
                                                      versions[start:stop])]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        a, b = index * self.count, min((index + 1) * self.count, len(self.listing))
        return MiniBatch(index, int(self.sizes[index]), b - a, tuple(self.listing.rels[a:b]), None, None, None, None,
                         tuple(self._stamps(a, b)))

    def _stamps(self, a: int, b: int) -> list:
        """Files a..b-1's (size, version) pairs, flat."""
        stamps = [0, 0] * (b - a)
        stamps[0::2], stamps[1::2] = self.listing.sizes[a:b], self.listing.versions[a:b]
        return stamps

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(x == y for x, y in zip(self, other))

    def json_lines(self, start: int, stop: int) -> list[str]:
        """Mini-batches start..stop-1 as the plan's JSON lines (MiniBatch.to_json's), made from the columns."""
        encode = _JSON.encode
        rels, sizes, versions = self.listing.rels, self.listing.sizes, self.listing.versions
        if self.count == 1:
            return [f'{{"id":{i},"size":{sizes[i]},"items":1,"files":[{encode(rels[i])}],"stamps":[{sizes[i]},'
                    f'{v if type(v) is int else encode(v)}]}}' for i, v in zip(range(start, stop),
                                                                               versions[start:stop])]
        lines = []
        for i in range(start, stop):
            a, b = i * self.count, min((i + 1) * self.count, len(rels))
            lines.append(f'{{"id":{i},"size":{self.sizes[i]},"items":{b - a},"files":{encode(rels[a:b])},'
                         f'"stamps":{encode(self._stamps(a, b))}}}')
        return lines


def _parquet_batches(spec: JobSpec, fs, path: str, rel: str, size: int,
                     row_groups: _RowGroupRows) -> Iterator[MiniBatch]:
    """Whole row groups up to the target; a row group larger than it is cut in even slices."""
    counts = row_groups(fs, path)
    total = sum(counts)
    if total == 0:
        return
    target = _target_rows(spec, size / total)
    start = 0
    pending = 0  # rows of whole groups gathered since `start`
    for n in counts:
        if pending and pending + n > target:
            yield _rows(rel, start, start + pending, size, total)
            start, pending = start + pending, 0
        if n > target:
            pieces = math.ceil(n / target)
            for k in range(pieces):
                a, b = start + n * k // pieces, start + n * (k + 1) // pieces
                yield _rows(rel, a, b, size, total)
            start += n
        else:
            pending += n
    if pending:
        yield _rows(rel, start, start + pending, size, total)


class _RowGroupRows:
    """The rows of each row group of a Parquet file, from its footer. Parsed in Python
    (parquetjoin's Thrift reader) while the footers read so far are small: a planner of a
    few files does without pyarrow (~0.3 s to import, in a process that needs it for
    nothing else); past `python_bytes` of footers, or a footer it cannot read, by pyarrow.
    Notes each kind of schema met (its first file), for `unified`."""

    def __init__(self, python_bytes: int = 256 * 2**10):  # ~0.25 s of parsing, about pyarrow's import
        self.python_bytes = python_bytes
        self.parsed = 0
        self.kinds: dict[bytes, str] = {}  # a kind of schema (parquetjoin.schema_kind) → its first file

    def __call__(self, fs, path: str) -> list[int]:
        from .parquetjoin import NotJoinable, read_footer, row_group_rows, schema_kind

        with fs.open(path, "rb") as f:
            if self.parsed < self.python_bytes:
                try:
                    meta, length = read_footer(f)
                    self.parsed += length
                    self.kinds.setdefault(schema_kind(meta), path)
                    return row_group_rows(meta)
                except (NotJoinable, IndexError, struct.error):  # pyarrow's message says why
                    f.seek(0)
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(f).metadata
            arrow = (meta.metadata or {}).get(b"ARROW:schema")  # as parquetjoin.schema_kind tells kinds apart
            self.kinds.setdefault(b"A" + arrow if arrow is not None else b"P" + str(meta.schema).encode(), path)
            return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]

    def unified(self, fs, base: str, root: str, rels: list[str]) -> pa.Schema | None:
        """The columns of the files `rels` unified (schemas.py), keys of hive folders among them;
        None where every file has the same columns and no folder names a key."""
        from .folder_keys import folder_keys, hive_fields
        from .schemas import SchemaClash, unify

        folders = folder_keys(rels)
        if len(self.kinds) < 2 and not folders:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        found: dict[pa.Schema, str] = {}
        for kind, path in self.kinds.items():
            if kind[:1] == b"A":
                schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(kind[1:])))
            else:
                with fs.open(path, "rb") as f:
                    schema = pq.read_schema(f)
            found.setdefault(schema.remove_metadata(), root + path[len(base) + 1:])
        if len(found) < 2 and not folders:
            return None
        own = {name: s.field(name).type for s in found for name in folders if name in s.names}
        try:
            return unify([(rel, schema) for schema, rel in found.items()]
                         + [("the folder names", pa.schema(hive_fields(folders, own)))])
        except SchemaClash as e:
            raise PlanError(f"spec.input: {e}") from None


def _rows(rel: str, a: int, b: int, file_size: int, file_rows: int) -> MiniBatch:
    return MiniBatch(id=0, size=file_size * (b - a) // file_rows, items=b - a, file=rel, rows=(a, b))


def _target_rows(spec: JobSpec, bytes_per_row: float) -> int:
    if spec.mini_batch_size.unit == "rows":
        return spec.mini_batch_size.value
    return max(1, int(spec.mini_batch_size.value / max(bytes_per_row, 1e-9)))


def _text_batches(spec: JobSpec, fs, path: str, rel: str, size: int) -> Iterator[MiniBatch]:
    """csv/jsonl: byte ranges that start and end where rows do, never inside a quoted value.

    A file of more than one mini-batch is scanned once for its row ends (rowends; by rows,
    items are then known); by size, one without quoting (jsonl) is read only at its cuts.
    A file with no safe cut (a stray quote) is one mini-batch, and so is a compressed one:
    its bytes cannot be cut (items unknown until read).
    """
    options = spec.input.options
    if compression_of(rel):
        yield MiniBatch(id=0, size=size, items=None, file=rel, bytes=(0, size))
        return
    with fs.open(path, "rb") as f:
        start = _line_end(f, 0) if spec.input.format == "csv" and has_header(spec) else 0
        if start >= size:
            return
        whole = MiniBatch(id=0, size=size - start, items=None, file=rel, bytes=(start, size))
        by_rows = spec.mini_batch_size.unit == "rows"
        if not by_rows and size - start <= spec.mini_batch_size.value:
            yield whole
            return
        from .rowends import Unsafe, cuts, row_ends  # here: it loads numpy, which a files job does without

        quote = quote_of(options) if spec.input.format == "csv" else None
        delimiter = options.get("delimiter", ",").encode()
        try:  # all cuts before the first yield: a stray quote met late makes every cut unsafe
            if by_rows:
                jsonl = spec.input.format == "jsonl"
                batches = list(_cuts_by_rows(f, row_ends(f, start, quote, delimiter, jsonl), rel, start, size,
                                             spec.mini_batch_size.value, jsonl))
            else:
                target = spec.mini_batch_size.value
                found = _line_cuts(f, start, size, target) if quote is None else \
                    cuts(f, start, size, target, quote, delimiter)
                points = [start, *found, size]
                batches = [MiniBatch(id=0, size=b - a, items=None, file=rel, bytes=(a, b))
                           for a, b in pairwise(points) if b > a]
        except Unsafe:
            batches = [whole]
        yield from batches


def _line_end(f, offset: int) -> int:
    """The offset just after the first newline at or after `offset` (or the end of file)."""
    f.seek(offset)
    while True:
        block = f.read(65536)
        if not block:
            return f.tell()
        i = block.find(b"\n")
        if i >= 0:
            return offset + i + 1
        offset += len(block)


def _line_cuts(f, start: int, size: int, target: int) -> Iterator[int]:
    """Cuts of a file without quoted values (jsonl; csv with quoteChar off): the line end
    after every `target` bytes, read there alone."""
    cut = start
    while cut + target < size:
        cut = _line_end(f, cut + target)
        yield cut


def _cuts_by_rows(f, ends: Iterator, rel: str, start: int, size: int, rows: int, jsonl: bool) -> Iterator[MiniBatch]:
    """Cut after every `rows` rows; the last mini-batch runs to the end of the file."""
    import numpy as np

    from .rowends import has_last_row

    row_ends = np.concatenate(list(ends) or [np.empty(0, dtype=np.int64)])
    last = int(row_ends[-1]) if len(row_ends) else start
    f.seek(last)
    count = len(row_ends) + has_last_row(f.read(size - last), jsonl)
    cut = start
    for i in range(rows - 1, count - 1, rows):
        stop = int(row_ends[i])
        yield MiniBatch(id=0, size=stop - cut, items=rows, file=rel, bytes=(cut, stop))
        cut = stop
    if count:
        left = count - (count - 1) // rows * rows
        yield MiniBatch(id=0, size=size - cut, items=left, file=rel, bytes=(cut, size))


def _partition_batches(spec: JobSpec, root: str, files: list[InputFile], env,
                       types: pa.Schema | None) -> tuple[list[MiniBatch], pa.Schema]:
    """One mini-batch per value of `partitionKeys`, gathered across files, in key order; and
    the columns the reader reads them with: `types` (csv/jsonl: the planned column types,
    column_types.py), else every file's own columns unified (schemas.py); with the keys of
    hive folders.

    Keys may be columns of the data or hive-style folders (`species=setosa/`).
    """
    import pyarrow as pa

    from .folder_keys import folder_keys, hive_fields
    from .partition_keys import key_kind, key_to_json
    from .schemas import SchemaClash, unify

    fmt, options, keys = spec.input.format, spec.input.options, list(spec.partition_keys)
    sizes = {f.rel: f.size for f in files}
    try:
        if types is not None:
            named = [("the planned column types", types)]
        else:
            named = [(root + rel, arrow_dataset(root, [rel], fmt, options, env).schema) for rel in sizes]
        folders = folder_keys(sizes)
        own = {name: s.field(name).type for _, s in named for name in folders if name in s.names}
        schema = unify([*named, ("the folder names", pa.schema(hive_fields(folders, own)))])
    except SchemaClash as e:
        raise PlanError(f"spec.input: {e}") from None
    missing = [k for k in keys if k not in schema.names]
    if missing:
        raise PlanError(f"spec.partitionKeys: {', '.join(missing)} not a column of {root}; "
                        f"columns: {', '.join(schema.names)}")
    for k in keys:
        try:
            key_kind(schema.field(k).type)
        except SchemaClash as e:
            raise PlanError(f"spec.partitionKeys: {k} {e}") from None
    groups: dict[tuple, dict] = defaultdict(lambda: {"files": [], "items": 0, "size": 0})
    for rel in sizes:
        try:
            table = arrow_dataset(root, [rel], fmt, options, env, schema).to_table(columns=keys)
        except (OSError, ValueError) as e:
            raise PlanError(f"spec.input: cannot read {root}{rel} as {fmt}: {e}") from e
        counts = table.group_by(keys).aggregate([([], "count_all")])
        total = table.num_rows or 1
        columns = [counts.column(k) for k in keys]
        for i, n in enumerate(counts.column("count_all").to_pylist()):
            key = tuple(key_to_json(c[i]) for c in columns)
            group = groups[key]
            group["files"].append(rel)
            group["items"] += n
            group["size"] += sizes[rel] * n // total
            group.setdefault("order", tuple(_key_order(c[i]) for c in columns))
    ordered = sorted(groups.items(), key=lambda kv: kv[1]["order"])
    return [MiniBatch(id=0, size=g["size"], items=g["items"], files=tuple(g["files"]),
                      key=dict(zip(keys, key))) for key, g in ordered], schema


def _key_order(value) -> tuple:
    """Where a key value sorts: by value, then NaN, then null."""
    number = value.as_py()
    nan = isinstance(number, float) and math.isnan(number)
    return (number is None, nan, None if number is None or nan else number)


# -- shards ----------------------------------------------------------------------


def shard(mini_batches: list[MiniBatch], count: int) -> list[ShardRange]:
    """Cut the plan into `count` contiguous shards of about equal bytes, never more shards
    than mini-batches (one empty shard when there are none).

    Contiguous keeps a file's mini-batches together (a worker's row-group cache hits);
    the merge follows plan order, so shard boundaries never change the output.
    """
    n = len(mini_batches)
    count = max(1, min(count, n))
    if isinstance(mini_batches, FileBatches):
        sizes, items_between = mini_batches.sizes, mini_batches.items_between
    else:
        sizes = [b.size for b in mini_batches]
        items = [b.items for b in mini_batches]

        def items_between(a: int, b: int) -> int | None:
            return None if None in items[a:b] else sum(items[a:b])
    weights = sizes if 0 not in sizes else list(map(max, sizes, repeat(1)))  # an empty file weighs 1
    cumulative = array("q", accumulate(weights))  # no numpy: a files job does not load it
    total = cumulative[-1] if n else 0
    bounds = [0]
    for k in range(1, count):
        balanced = bisect_left(cumulative, total * k / count) + 1 if n else 0
        # at least one mini-batch for this shard, and one left for each later shard while there are any
        bounds.append(min(max(balanced, bounds[-1] + 1), max(n - (count - k), bounds[-1] + 1), n))
    bounds.append(n)
    return [ShardRange(k, a, b - a, items_between(a, b), sum(sizes[a:b]))
            for k, (a, b) in enumerate(pairwise(bounds))]


CHUNKS_PER_SHARD = 16  # the last chunk of a job is about this fraction of a pod's work
MAX_CHUNK_MINI_BATCHES = 1000  # a claim per commit group at most: claims stay a small share of requests


def chunk_size(total_mini_batches: int, shard_count: int) -> int:
    """Mini-batches per chunk: many chunks per shard, so that pods that finish early take over
    the tails of the others, and never so small that claiming costs more than committing."""
    per_shard = -(-total_mini_batches // max(shard_count, 1))
    return max(1, min(-(-per_shard // CHUNKS_PER_SHARD), MAX_CHUNK_MINI_BATCHES))


def shards_with_work(total_mini_batches: int, node_count: int) -> int:
    """How many shards a plan has (shard()): one per mini-batch up to nodeCount; an empty plan's one."""
    return max(1, min(total_mini_batches, node_count))


# -- persistence -----------------------------------------------------------------


def plan_lines(mini_batches: Sequence[MiniBatch], start: int, stop: int) -> list[str]:
    """Mini-batches start..stop-1 as their lines of the plan (without newlines)."""
    if isinstance(mini_batches, FileBatches):
        return mini_batches.json_lines(start, stop)
    return [b.to_json() for b in mini_batches[start:stop]]


def _text(lines: list[str]) -> bytes:
    """Lines as a file's bytes, each ending with a newline; `lines` is emptied (its strings are
    freed before the text is encoded: a million of them weigh as much as the text)."""
    if lines:
        lines[-1] += "\n"  # not text + "\n": one copy of the text less
    text = "\n".join(lines)
    lines.clear()
    return text.encode()


def write_plan(plan: Plan, fs, layout: Layout) -> None:
    """Write every shard's mini-batches, then the header: its presence commits the plan."""
    for s in plan.shards:
        write_atomic(fs, layout.plan_shard(s.index), _text(plan_lines(plan.mini_batches, s.first, s.first + s.count)))
    write_atomic(fs, layout.plan_header, json.dumps(plan.header(), indent=1).encode())


def read_plan(fs, layout: Layout) -> Plan | None:
    """The committed plan's header, or None when this run has not been planned."""
    try:
        with fs.open(layout.plan_header, "rb") as f:
            return Plan.from_header(json.load(f))
    except FileNotFoundError:
        return None


def read_shard(fs, layout: Layout, index: int) -> list[MiniBatch]:
    with fs.open(layout.plan_shard(index), "rt") as f:
        return MiniBatch.many_from_json([line for line in f if line.strip()])


def ensure_plan(spec: JobSpec, fs, layout: Layout, env: Mapping[str, str] | None = None) -> Plan:
    """The run's plan: the committed one if there is one (a resumed run), else a new one.

    A committed plan is only resumed while the input, model and side inputs are still
    what it was made from; otherwise InputChanged names what changed."""
    existing = read_plan(fs, layout)
    if existing is None:
        plan = make_plan(spec, env)
        write_atomic(fs, layout.spec, json.dumps(spec.to_dict(), indent=1).encode())
        write_plan(plan, fs, layout)
        return plan
    changes = input_changes(spec, existing, fs, layout, env)
    if changes:
        raise InputChanged(f"the input changed since run {layout.run_id} was planned: {'; '.join(changes)}. "
                           "Resuming would mix old and new data; rerun with --fresh to plan it again")
    return existing


# -- what a plan was made from -------------------------------------------------------


def source_versions(spec: JobSpec, env: Mapping[str, str] | None = None) -> dict:
    """Versions of the model and side inputs, to tell a resumed run that they changed."""
    return {"model": tree_version(spec.model_uri, env) if spec.model_uri else None,
            "sideInputs": {s.name: tree_version(s.uri, env) for s in spec.side_inputs}}


def tree_version(uri: str, env: Mapping[str, str] | None = None) -> str | None:
    """A digest of every file's path, size and version under `uri` (a file or a folder); None if absent."""
    fs, path = filesystem(uri, env)
    try:
        if fs.isfile(path):
            entries = [("", fs.info(path))]
        else:
            prefix = path.rstrip("/") + "/"
            entries = [(p[len(prefix):], info) for p, info in sorted(fs.find(path, detail=True).items())]
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not entries:
        return None
    digest = hashlib.sha256()
    for rel, info in entries:
        digest.update(f"{rel}\0{info.get('size')}\0{file_version(info)}\n".encode())
    return digest.hexdigest()[:16]


def input_changes(spec: JobSpec, plan: Plan, fs, layout: Layout, env: Mapping[str, str] | None = None) -> list[str]:
    """What differs between the input now and when `plan` was made (empty: nothing)."""
    planned: dict[str, tuple] = {}
    for s in plan.shards:
        if s.count:
            for mb in read_shard(fs, layout, s.index):
                if mb.stamps is None:  # a plan written before stamps were recorded
                    return []
                planned.update(zip(mb.paths, mb.file_stamps()))
    root, files = list_input(spec, env)
    now = {f.rel: (f.size, f.version) for f in files}
    if root != plan.input_uri:  # a manifest now listing files of another folder: compare whole URIs
        planned = {plan.absolute(rel): stamp for rel, stamp in planned.items()}
        now = {root + rel: stamp for rel, stamp in now.items()}
    changed = [f"{rel} ({_difference(planned[rel], now[rel])})" for rel in sorted(planned.keys() & now.keys())
               if tuple(planned[rel]) != now[rel]]
    changes = [_listed(what, names) for what, names in (
        ("changed", changed), ("added", sorted(now.keys() - planned.keys())),
        ("removed", sorted(planned.keys() - now.keys()))) if names]
    return changes + [f"{what} changed" for what in changed_sources(spec, plan.sources, env)]


def changed_sources(spec: JobSpec, planned: dict | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The model and side inputs whose version differs from the plan's. One the planner could
    not see (a path inside the image, a volume of the pods) has no version there: not compared."""
    if planned is None:
        return []
    now = source_versions(spec, env)
    changed = []
    if planned.get("model") is not None and now["model"] != planned["model"]:
        changed.append(f"the model at {spec.model_uri}")
    for name, version in now["sideInputs"].items():
        then = planned.get("sideInputs", {}).get(name)
        if then is not None and version != then:
            changed.append(f"side input {name}")
    return changed


def _difference(then: tuple, now: tuple) -> str:
    return f"size {then[0]:,} → {now[0]:,}" if then[0] != now[0] else "rewritten"


def _listed(what: str, names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most]) + (f" and {len(names) - most:,} more" if len(names) > most else "")
    return f"{len(names):,} {what}: {shown}"
