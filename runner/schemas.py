"""The one set of columns a tabular job is read with, and how plans and records hold a schema.

A job's mini-batches are read on their own, by many processes; each would otherwise type
its columns by the rows or the file at hand. The planner fixes one schema instead and
records it in the plan header (`input.schema`, to_header/from_header): every reader gives
run() its tables with exactly those columns and types, and the merge never meets two
types of one column that the input caused.

- csv/jsonl: the column types inferred from samples and `input.options.columnTypes`
  (column_types.py).
- parquet: the files' own Arrow schemas, unified here where they differ (another writer,
  a dictionary or plain strings, string or large_string, a column added one day, int64 in
  one file and double in another, one instant under two time zone names), with the keys
  of hive folders (folder_keys.py).

A schema in the plan and in the records (records.py) is text: schema_to_text, schema_from_text.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


class SchemaClash(ValueError):
    """Two files store one column in types that have no common type."""


def schema_to_text(schema: pa.Schema) -> str:
    """A schema as a short string for plans, done records and shard results (no metadata)."""
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def to_header(schema: pa.Schema) -> dict:
    """The plan header's `input.schema`: the columns by name with readable types (for people
    reading the plan), and the schema itself (schema_to_text), which readers use."""
    return {"columns": {field.name: str(field.type) for field in schema}, "arrow": schema_to_text(schema)}


def from_header(record: dict) -> pa.Schema:
    """The schema of a plan header's `input.schema` (to_header's)."""
    return schema_from_text(record["arrow"])


def _comparable(types: list[pa.DataType]) -> list[pa.DataType]:
    """Types of one column as one type can hold them: a dictionary as its values, zoned
    timestamps in UTC (the same instants)."""
    import pyarrow as pa

    out = [t.value_type if pa.types.is_dictionary(t) else t for t in types]
    if all(pa.types.is_timestamp(t) and t.tz for t in out):
        out = [pa.timestamp(t.unit, "UTC") for t in out]
    return out


def unify(named: list[tuple[str, pa.Schema]]) -> pa.Schema:
    """One schema holding every column of every (file name, schema), in order of first
    appearance, each in a type that holds all its files' values. Raises SchemaClash naming
    the column and two files where there is none."""
    import pyarrow as pa

    schemas = [s.remove_metadata() for _, s in named]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    columns: dict[str, list[tuple[str, pa.DataType]]] = {}
    for (name, _), schema in zip(named, schemas):
        for field in schema:
            columns.setdefault(field.name, []).append((name, field.type))
    fields = []
    for column, found in columns.items():
        types = _comparable([t for _, t in found])
        try:
            fields.append(pa.unify_schemas([pa.schema([(column, t)]) for t in types],
                                           promote_options="permissive").field(0))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            (first, first_type), other = found[0], next((f, t) for f, t in found if t != found[0][1])
            raise SchemaClash(f"column {column!r} is {first_type} in {first} but {other[1]} in {other[0]}; "
                              "write it in one type in every file, or select the files of one kind with "
                              "spec.input.pattern") from None
    return pa.schema(fields)


def aligned(table: pa.Table, target: pa.Schema) -> pa.Table:
    """`table` with `target`'s columns in its order: missing ones null, types cast."""
    import pyarrow as pa

    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in target]
    return pa.Table.from_arrays(columns, schema=target)
