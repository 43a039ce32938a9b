"""Cutting tabular files into mini-batches: parquet row ranges aligned to row groups, csv/jsonl byte
ranges that start and end where rows do, partitions (one key's rows across files)."""

from __future__ import annotations

import base64
import math
import struct
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from typing import TYPE_CHECKING

from ..formats import arrow_dataset, compression_of, has_header, quote_of
from ..spec import JobSpec
from .model import InputFile, MiniBatch, PlanError

if TYPE_CHECKING:
    import pyarrow as pa


def parquet_batches(spec: JobSpec, fs, path: str, rel: str, size: int,
                     row_groups: RowGroupRows) -> Iterator[MiniBatch]:
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


class RowGroupRows:
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
        from ..parquetjoin import NotJoinable, read_footer, row_group_rows, schema_kind

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
        from ..folder_keys import folder_keys, hive_fields
        from ..schemas import SchemaClash, unify

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


def text_batches(spec: JobSpec, fs, path: str, rel: str, size: int) -> Iterator[MiniBatch]:
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
        from ..rowends import Unsafe, cuts, row_ends  # here: it loads numpy, which a files job does without

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

    from ..rowends import has_last_row

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


def partition_batches(spec: JobSpec, root: str, files: list[InputFile], env,
                       types: pa.Schema | None) -> tuple[list[MiniBatch], pa.Schema]:
    """One mini-batch per value of `partitionKeys`, gathered across files, in key order; and
    the columns the reader reads them with: `types` (csv/jsonl: the planned column types,
    column_types.py), else every file's own columns unified (schemas.py); with the keys of
    hive folders.

    Keys may be columns of the data or hive-style folders (`species=setosa/`).
    """
    import pyarrow as pa

    from ..folder_keys import folder_keys, hive_fields
    from ..partition_keys import key_kind, key_to_json
    from ..schemas import SchemaClash, unify

    fmt, options, keys = spec.input.format, spec.input.options, list(spec.partition_keys)
    assert fmt is not None  # tabular input has a format
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
