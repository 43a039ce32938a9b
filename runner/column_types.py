"""One type per column for a whole csv or jsonl input, fixed when the job is planned.

pyarrow infers a column's type from the rows it reads, so mini-batches read on their own
would type a column by where the cuts fall (`007`, `008` numbers in one, text beside
`A09` in the next). The planner infers the types once instead: from each file's first
SAMPLE bytes (the whole file when it is smaller; files in plan order until BUDGET bytes
are read), widened across files and under `input.options.columnTypes`, and records them
in the plan header (`input.schema`, schemas.to_header). Every mini-batch is read with
those types; one that holds a value or a column that does not fit fails with an error
naming the column and `columnTypes`, never with other types.

Widening: a column of one type keeps it; null (no value seen) takes the other's type;
integers and floats give float64; anything else gives string (csv; jsonl has no such
cast, so there it is a planning error). A csv column with no value in a sample that is
not its whole file is string.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from .formats import compression_of, csv_options, decompressed, has_header, quote_of

if TYPE_CHECKING:
    import pyarrow as pa

SAMPLE = 2**20
BUDGET = 64 * 2**20


class SchemaMismatch(ValueError):
    """A mini-batch holds a value or a column that the plan's types do not allow."""


def infer(fmt: str, options: dict, fs, base: str, rels: list[str], sizes: list[int]) -> pa.Schema:
    """The input's column types, as the module docstring says."""
    import pyarrow as pa

    columns = _Columns(fmt)
    small = _SmallFiles(fmt, options, columns)
    read = 0
    for rel, size in zip(rels, sizes):
        if read >= BUDGET:
            break
        if size == 0:
            continue
        sample, whole = _head(fs, f"{base}/{rel}", rel, fmt, options)
        read += len(sample)
        if whole:
            small.add(rel, sample)
        else:
            columns.add(_sample_schema(fmt, options, sample), rel, whole=False)
    small.flush()
    schema = pa.schema([(name, kind) for name, (kind, _) in columns.found.items()])
    for name, kind in declared(options).items():
        index = schema.get_field_index(name)
        schema = schema.set(index, pa.field(name, kind)) if index >= 0 else schema.append(pa.field(name, kind))
    return schema


class _Columns:
    """Each column's type so far, widened file by file, and the file it was first seen in."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.found: dict[str, tuple[pa.DataType, str]] = {}

    def add(self, schema: pa.Schema, rel: str, whole: bool) -> None:
        import pyarrow as pa

        for field in schema:
            kind = field.type
            if self.fmt == "csv" and pa.types.is_null(kind) and not whole:
                kind = pa.string()
            if field.name not in self.found:
                self.found[field.name] = (kind, rel)
                continue
            before, first = self.found[field.name]
            wider = _widen(before, kind, to_string=self.fmt == "csv")
            if wider is None:
                raise ValueError(f"column {field.name!r} is {before} in {first} but {kind} in {rel}, and jsonl "
                                 "values are not converted; write the column alike in every file")
            self.found[field.name] = (wider, first)


class _SmallFiles:
    """Whole files parsed together, those of one header line at a time (pyarrow's inference
    widens as _widen does): a call per file would cost ~0.2 ms each, most of the planning of
    many small files. A group pyarrow cannot read as one is read file by file, to name them."""

    def __init__(self, fmt: str, options: dict, columns: _Columns):
        self.fmt, self.options, self.columns = fmt, options, columns
        self.header = fmt == "csv" and has_header(options)
        self.groups: dict[bytes, list[tuple[str, bytes]]] = {}
        self.bytes: dict[bytes, int] = {}

    def add(self, rel: str, data: bytes) -> None:
        if self.header:
            head, _, body = data.partition(b"\n")
        else:
            head, body = b"", data
        self.groups.setdefault(head, []).append((rel, body))
        self.bytes[head] = self.bytes.get(head, 0) + len(body)
        if self.bytes[head] >= SAMPLE:
            self._parse(head)

    def flush(self) -> None:
        for head in list(self.groups):
            self._parse(head)

    def _parse(self, head: bytes) -> None:
        import pyarrow as pa

        files, prefix = self.groups.pop(head), head + b"\n" if self.header else b""
        self.bytes.pop(head)
        together = prefix + b"".join(body if body.endswith(b"\n") or not body else body + b"\n" for _, body in files)
        try:
            self.columns.add(_sample_schema(self.fmt, self.options, together), files[0][0], whole=True)
        except pa.ArrowInvalid:
            for rel, body in files:
                self.columns.add(_sample_schema(self.fmt, self.options, prefix + body), rel, whole=True)


def declared(options: dict) -> dict[str, pa.DataType]:
    """`input.options.columnTypes` as pyarrow types (the spec checked them: spec.COLUMN_TYPES)."""
    import pyarrow as pa

    return {name: pa.type_for_alias(kind) for name, kind in (options.get("columnTypes") or {}).items()}


def _widen(a: pa.DataType, b: pa.DataType, to_string: bool) -> pa.DataType | None:
    """The type both fit (module docstring); None where only string would and `to_string` is off."""
    import pyarrow as pa

    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if (pa.types.is_integer(a) or pa.types.is_floating(a)) and (pa.types.is_integer(b) or pa.types.is_floating(b)):
        return pa.float64()
    return pa.string() if to_string else None


def _head(fs, path: str, rel: str, fmt: str, options: dict) -> tuple[bytes, bool]:
    """The file's first whole rows within SAMPLE bytes (decompressed; more where that holds no
    row), and whether that is all of it."""
    compression = compression_of(rel)
    header = 1 if fmt == "csv" and has_header(options) else 0
    with fs.open(path, "rb") as raw:
        f = decompressed(raw, compression) if compression else raw
        head, want = b"", SAMPLE + 1
        while True:
            head += f.read(want - len(head))
            if len(head) < want:
                return head, True
            rows, last = _rows_in(head, fmt, options)
            if rows > header:
                return head[:last], False
            want *= 2


def _rows_in(head: bytes, fmt: str, options: dict) -> tuple[int, int]:
    """How many rows the first bytes of a file end, and where the last ends; a quoted value
    the bytes end in cuts them short."""
    from .rowends import Unsafe, row_ends

    quote = quote_of(options) if fmt == "csv" else None
    count, last = 0, 0
    try:
        for block in row_ends(io.BytesIO(head), 0, quote, options.get("delimiter", ",").encode(), fmt == "jsonl"):
            if len(block):
                count, last = count + len(block), int(block[-1])
    except Unsafe:  # the bytes end inside a quoted value (the rows so far hold), or a stray quote: lines
        if not count:
            count, last = head.count(b"\n"), head.rfind(b"\n") + 1
    return count, last


def _sample_schema(fmt: str, options: dict, sample: bytes) -> pa.Schema:
    if fmt == "jsonl":
        import pyarrow.json as pj

        table = pj.read_json(io.BytesIO(sample))
        columns = options.get("columns")
        return table.select(columns).schema if columns else table.schema
    import pyarrow.csv as csv

    read, parse, convert = csv_options(options, newlines_in_values=True)
    return csv.read_csv(io.BytesIO(sample), read_options=read, parse_options=parse, convert_options=convert).schema


def mismatch(error: Exception, schema: pa.Schema, names: list[str] | None, where: str) -> SchemaMismatch | None:
    """pyarrow's error reading `where` as one that names the column and the fix; None when
    it is no type mismatch (a malformed row, say)."""
    text = str(error)
    if not re.search(r"conversion error|changed from|unexpected field", text):
        return None
    found = re.search(r"column #(\d+)", text)
    column = names[int(found.group(1))] if found and names and int(found.group(1)) < len(names) else None
    found = re.search(r"Column\(/([^)]*)\)", text)
    column = found.group(1) if found else column
    planned = f"planned as {schema.field(column).type}" if column in schema.names else "not planned"
    named = f"column {column!r} ({planned})" if column else "a column"
    return SchemaMismatch(f"{where} does not fit the column types fixed when the job was planned: {named}: {error}. "
                          f"Declare the type in spec.input.options.columnTypes, e.g. {{{column or 'code'}: string}}")
