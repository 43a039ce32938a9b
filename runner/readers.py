"""Reading one mini-batch: local file paths (files) or a pandas DataFrame (tabular)."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Mapping
from stat import S_ISFIFO, S_ISREG, S_ISSOCK
from typing import TYPE_CHECKING

from .column_types import SchemaMismatch, mismatch
from .folder_keys import with_folder_keys
from .formats import (
    RAW_COLUMN,
    arrow_dataset,
    compression_of,
    csv_options,
    decompressed,
    has_header,
    quote_of,
    raw_lines,
)
from .partition_keys import key_filter
from .planning import MiniBatch, Plan, file_version
from .schemas import aligned, from_header
from .storage import filesystem, is_local

if TYPE_CHECKING:  # imported where a table is read: a files job never loads pyarrow
    import pyarrow as pa


class InputChangedError(RuntimeError):
    """A file of the mini-batch is not the one that was planned: its items fail, none is read twice."""


class NotAFileError(OSError):
    """A planned input entry is a fifo, socket or device: nothing to read as a file."""


def _regular(path: str, stat: os.stat_result) -> None:
    """Refuse an entry that is not a regular file: opening a fifo would wait for a writer forever."""
    if not S_ISREG(stat.st_mode):
        kind = "a fifo" if S_ISFIFO(stat.st_mode) else "a socket" if S_ISSOCK(stat.st_mode) else "a device"
        raise NotAFileError(f"{path} is {kind}, not a regular file; its items are failed, not read")


class PartitionMismatch(RuntimeError):
    """A partition's files hold other than its planned rows although none of them changed."""


class Reader:
    """Reads mini-batches of one plan; one per worker process.

    Keeps the last parquet row groups it decoded, so consecutive slices of one large
    row group are decoded once per worker, not once per slice.
    """

    def __init__(self, plan: Plan, scratch: str, env: Mapping[str, str] | None = None):
        self.plan = plan
        self.scratch = scratch
        self.env = env
        self.fs, self.base = filesystem(plan.input_uri, env)
        self._cache: tuple[tuple, pa.Table] | None = None
        self._headers: dict[str, list[str]] = {}
        self.schema = from_header(plan.schema) if plan.schema is not None else None  # the plan's columns (schemas.py)
        self._selected = _selected(self.schema, plan.options.get("columns"))  # those of them read
        self.types: pa.Schema | None = None  # the columns of the last table read

    def path(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def read(self, mb: MiniBatch):
        """(payload for run(), number of items in it). Raises InputChangedError when a file
        is not the one planned (or, where the plan has no file versions, holds other than
        the planned rows)."""
        if self.plan.input_type == "files":
            paths = self.local_files(mb)
            return paths, len(paths)
        table = self.read_table(mb)
        unversioned = any(stamp is None or stamp[1] is None for stamp in mb.file_stamps())
        if mb.items is not None and table.num_rows != mb.items and unversioned:
            raise InputChangedError(f"{mb.items:,} rows were planned but {table.num_rows:,} were read from "
                                    f"{', '.join(self.plan.absolute(p) for p in mb.paths)}: the input changed "
                                    "since planning; rerun with --fresh to plan it again")
        self.types = table.schema
        return table.to_pandas(), table.num_rows

    def _compare(self, rel: str, stamp: tuple, size: int, version: int | str | None) -> None:
        planned_size, planned_version = stamp
        if size != planned_size or (planned_version is not None and version is not None
                                    and version != planned_version):
            what = f"size {planned_size:,} → {size:,}" if size != planned_size else "rewritten"
            raise InputChangedError(f"{self.plan.absolute(rel)} changed since planning ({what}); its items are "
                                    "failed, not read; rerun with --fresh to plan it again")

    def _check(self, rel: str, stamp: tuple | None, opened=None) -> None:
        """Compare a file now with the plan's stamp of it (None: the plan has none).
        `opened`, a remote file already open, carries its details: no extra request."""
        if stamp is None:
            return
        if is_local(self.fs):
            stat = os.stat(self.path(rel))
            self._compare(rel, stamp, stat.st_size, stat.st_mtime_ns)
        else:
            details = getattr(opened, "details", None) or self.fs.info(self.path(rel))
            self._compare(rel, stamp, int(details.get("size") or 0), file_version(details))

    def _open(self, mb: MiniBatch, rel: str):
        """The mini-batch's one input file, opened for reading and checked against the plan."""
        f = self.fs.open(self.path(rel), "rb")
        try:
            self._check(rel, mb.file_stamps()[0], f)
        except BaseException:
            f.close()
            raise
        return f

    def local_files(self, mb: MiniBatch) -> list[str]:
        if is_local(self.fs):
            # _check's comparison, inlined (a stat each): a small files job pays it per file.
            rels, stamps, stat = mb.paths, mb.stamps, os.stat
            paths = [self.path(rel) for rel in rels]
            if stamps is not None:
                for k, path in enumerate(paths):
                    now = stat(path)
                    if now.st_size != stamps[2 * k] or now.st_mtime_ns != stamps[2 * k + 1]:  # _compare judges
                        _regular(path, now)
                        self._compare(rels[k], stamps[2 * k:2 * k + 2], now.st_size, now.st_mtime_ns)
            # abspath's result without its cost where it is the path itself (absolute, no `.`, `..` or `//`)
            return [p if p[:1] == "/" and "/." not in p and "//" not in p else os.path.abspath(p) for p in paths]
        target = os.path.join(self.scratch, "files", str(mb.id))
        shutil.rmtree(target, ignore_errors=True)
        rels = mb.paths
        paths = [os.path.join(target, r) for r in rels]
        for folder in {os.path.dirname(local) for local in paths}:
            os.makedirs(folder, exist_ok=True)
        self.fs.get([self.path(rel) for rel in rels], paths)  # concurrently, on an async store (adlfs, s3fs)
        for rel, local, stamp in zip(rels, paths, mb.file_stamps()):
            if stamp is not None:
                self._compare(rel, stamp, os.path.getsize(local), None)  # the size: no extra request
        return paths

    def cleanup(self, mb: MiniBatch) -> None:
        if self.plan.input_type == "files" and not is_local(self.fs):
            shutil.rmtree(os.path.join(self.scratch, "files", str(mb.id)), ignore_errors=True)

    def read_table(self, mb: MiniBatch) -> pa.Table:
        if mb.key is not None:
            return self._read_partition(mb, mb.key)
        rel, (start, stop) = _span(mb)
        if self.plan.input_format == "parquet":
            return self._read_parquet_rows(mb, rel, start, stop)
        compression = compression_of(rel)
        data = self._read_whole(mb, rel, compression) if compression else self._read_range(mb, rel, start, stop)
        return self._parse_text(mb, rel, data, whole=bool(compression))

    def _parse_text(self, mb: MiniBatch, rel: str, data: bytes, whole: bool) -> pa.Table:
        """A csv/jsonl mini-batch's bytes (`whole`: the whole file, header included) with the plan's column types."""
        import pyarrow as pa

        options, schema, names = self.plan.options, self.schema, None
        try:
            if self.plan.input_format == "jsonl" and raw_lines(options):  # as the planner counts rows: no blank line
                lines = [line.rstrip("\r") for line in data.decode().split("\n") if line.strip(" \t\r")]
                return pa.table({RAW_COLUMN: pa.array(lines, pa.string())})
            if self.plan.input_format == "jsonl":
                import pyarrow.json as pj

                columns = options.get("columns")  # the plan's types are of these alone; other fields are not read
                unexpected = "infer" if schema is None else "ignore" if columns else "error"
                parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected)
                table = pj.read_json(io.BytesIO(data), parse_options=parse)
                return table.select(columns) if columns else table
            import pyarrow.csv as csv

            names = self._csv_header(rel) if has_header(options) and not whole else None
            quote = quote_of(options)  # pyarrow's blocks are then cut only outside quoted values
            read, parse, convert = csv_options(options, names, column_types=schema,
                                               newlines_in_values=quote is not None and quote in data)
            names = names or read.column_names
            table = csv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as e:
            unfit = mismatch(e, schema, names, self._where(mb)) if schema is not None else None
            if unfit is None:
                raise
            raise unfit from None
        unplanned = [] if schema is None else [name for name in table.column_names if name not in schema.names]
        if unplanned:
            raise SchemaMismatch(
                f"{self._where(mb)} has column {unplanned[0]!r}, which the files sampled when the job was planned "
                f"do not have; declare its type in spec.input.options.columnTypes, e.g. {{{unplanned[0]}: string}}")
        return table

    def _where(self, mb: MiniBatch) -> str:
        rel, (start, stop) = _span(mb)
        source = self.plan.absolute(rel)
        return f"{source} (bytes {start:,}-{stop:,})" if not compression_of(rel) else source

    def _read_whole(self, mb: MiniBatch, rel: str, compression: str) -> bytes:
        """A compressed file's bytes, decompressed."""
        with self._open(mb, rel) as f:
            return decompressed(f, compression).read()

    def count_lines(self, mb: MiniBatch) -> int:
        """Items of a text mini-batch that failed before it was parsed: its rows, counted as the
        planner counts them (the file as it is now: a plan by size does not know its rows)."""
        from .rowends import Unsafe, count

        rel, (start, stop) = _span(mb)
        compression = compression_of(rel)
        with self.fs.open(self.path(rel), "rb") as f:
            if compression:
                data = decompressed(f, compression).read()
            else:
                f.seek(start)
                data = f.read(stop - start)
        csv = self.plan.input_format == "csv"
        try:
            rows = count(data, quote_of(self.plan.options) if csv else None,
                         self.plan.options.get("delimiter", ",").encode(), jsonl=not csv)
        except Unsafe:  # a stray quote: pyarrow's rows are not known without parsing; its lines are
            rows = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
        header = compression and csv and has_header(self.plan.options)
        return max(rows - 1, 0) if header else rows

    def _read_range(self, mb: MiniBatch, rel: str, start: int, stop: int) -> bytes:
        with self._open(mb, rel) as f:
            f.seek(start)
            return f.read(stop - start)

    def _csv_header(self, rel: str) -> list[str]:
        """Column names from the file's header line (a byte range past it has none)."""
        if rel not in self._headers:
            import pyarrow.csv as csv

            with self.fs.open(self.path(rel), "rb") as f:
                first = f.readline()
            _, parse, _ = csv_options(self.plan.options)
            self._headers[rel] = csv.read_csv(io.BytesIO(first), parse_options=parse).column_names
        return self._headers[rel]

    def _read_parquet_rows(self, mb: MiniBatch, rel: str, start: int, stop: int) -> pa.Table:
        import pyarrow.parquet as pq

        with self._open(mb, rel) as f:
            pf = pq.ParquetFile(f)
            meta = pf.metadata
            groups, first, offset = [], None, 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if offset < stop and offset + n > start:
                    groups.append(g)
                    first = offset if first is None else first
                offset += n
            if first is None:  # a plan without the file's stamps cannot tell that it changed
                raise InputChangedError(f"{self.plan.absolute(rel)} has {offset:,} rows but rows {start:,}-{stop:,} "
                                        "were planned: the input changed since planning; its items are failed, not "
                                        "read; rerun with --fresh to plan it again")
            key = (rel, tuple(groups))
            if self._cache is None or self._cache[0] != key:
                self._cache = None  # let the previous groups go before decoding the next
                columns = self.plan.options.get("columns")
                if columns and self.schema is not None:  # those of them this file has; aligned adds the others
                    columns = [c for c in columns if c in pf.schema_arrow.names]
                table = pf.read_row_groups(groups, columns=columns)
                if self._selected is not None:
                    table = aligned(with_folder_keys(table, rel, self._selected), self._selected)
                self._cache = (key, table)
        return self._cache[1].slice(start - first, stop - start)

    def _read_partition(self, mb: MiniBatch, key: dict) -> pa.Table:
        rels, fmt = mb.paths, self.plan.input_format
        assert fmt is not None  # a tabular plan has its input's format
        for rel, stamp in zip(rels, mb.file_stamps()):
            self._check(rel, stamp)
        dataset = arrow_dataset(self.plan.input_uri, list(rels), fmt, self.plan.options, self.env, self.schema)
        table = dataset.to_table(filter=key_filter(key, dataset.schema), columns=self.plan.options.get("columns"))
        if table.num_rows != mb.items:  # the planner and the filter disagree: never a silent loss
            raise PartitionMismatch(f"partition {key}: {mb.items:,} rows were planned but {table.num_rows:,} "
                                    f"were read from {', '.join(self.plan.absolute(p) for p in rels)}")
        return table


def _span(mb: MiniBatch) -> tuple[str, tuple[int, int]]:
    """A tabular mini-batch's file and its range in it: rows [start, stop) of a parquet file, else bytes."""
    span = mb.rows if mb.rows is not None else mb.bytes
    assert mb.file is not None and span is not None  # a tabular mini-batch, a partition's aside
    return mb.file, span


def _selected(schema, columns: list[str] | None):
    """`schema` with only `columns` (input.options.columns) where they are given."""
    if schema is None or not columns:
        return schema
    import pyarrow as pa

    return pa.schema([schema.field(c) for c in columns if c in schema.names])
