"""One set of columns for a tabular input whose files differ, and partition key values as JSON.

Files of one input may store a column differently: written by another tool (a dictionary
or plain strings, string or large_string), on a day that added a column, as int64 in one
file and double in another, or one instant under two time zone names. The planner unifies
the files' Arrow schemas into one and records it in the plan; the readers give run()
every table with exactly those columns and types, so no mini-batch loses a column and
the merge never meets two types of one column that the input caused.

Hive folders (`k=v/`, as pyarrow, DuckDB, polars and Spark write them) are parsed here,
not by pyarrow's discovery, which infers a key's type from the files at hand and fails on
a key that is null (`__HIVE_DEFAULT_PARTITION__`) in all of them.
"""

from __future__ import annotations

import base64
import math
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    import pyarrow as pa

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # a null key's folder name (Hive, Spark, pyarrow, DuckDB)
_INT64_TEXT = re.compile(r"-?[0-9]{1,18}")  # a folder value read as int64 (Arrow casts it; no overflow)


class SchemaClash(ValueError):
    """Two files store one column in types that have no common type."""


def schema_to_text(schema: pa.Schema) -> str:
    """A schema as a short string for plans, done records and shard results (no metadata)."""
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def hive_keys(rel: str) -> dict[str, str | None]:
    """The `name=value` folders of a path under the input root: value text, None for a null."""
    keys = {}
    for part in rel.split("/")[:-1]:
        name, sep, value = part.partition("=")
        if sep and name:
            value = unquote(value)
            keys[unquote(name)] = None if value == HIVE_NULL else value
    return keys


def folder_keys(rels) -> dict[str, list[str | None]]:
    """Each hive key of some paths, with its values (hive_keys')."""
    values: dict[str, list[str | None]] = {}
    for rel in rels:
        if "=" in rel:
            for name, value in hive_keys(rel).items():
                values.setdefault(name, []).append(value)
    return values


def with_folder_keys(table: pa.Table, rel: str, schema: pa.Schema) -> pa.Table:
    """`table`, read from the file `rel`, with the keys of its folders as columns (typed by `schema`)."""
    import pyarrow as pa

    for name, value in hive_keys(rel).items():
        if name in schema.names and name not in table.column_names:
            t = schema.field(name).type
            table = table.append_column(pa.field(name, t), pa.repeat(pa.scalar(value, pa.string()).cast(t),
                                                                     table.num_rows))
    return table


def hive_fields(values: dict[str, list[str | None]], stored: dict[str, pa.DataType]) -> list[pa.Field]:
    """The type of each hive key: the type of its column where files hold it too (polars writes
    both), else int64 where every value is an integer, else string."""
    import pyarrow as pa

    def integers(texts) -> bool:
        return all(t is None or _INT64_TEXT.fullmatch(t) for t in texts)

    return [pa.field(name, stored[name] if name in stored else pa.int64() if integers(texts) else pa.string())
            for name, texts in values.items()]


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


# -- partition key values ---------------------------------------------------------------


def key_kind(t: pa.DataType) -> str:
    """How key_to_json holds a key of type `t`: "json" as it is, "float", "int" (a time or
    duration: Arrow reads neither back from text) or "text" (as Arrow writes it). Raises
    SchemaClash for a type no key may have (nested, binary)."""
    import pyarrow as pa

    if pa.types.is_floating(t):
        return "float"
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)
            or pa.types.is_null(t)):
        return "json"
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return "int"
    if pa.types.is_temporal(t) or pa.types.is_decimal(t):
        return "text"
    raise SchemaClash(f"is {t}; partition by columns of text, numbers, booleans, dates, timestamps or decimals")


def key_to_json(value: pa.Scalar):
    """A key value as plan JSON holds it: text, numbers and booleans as they are; a float
    that is not finite, a date, timestamp or decimal as Arrow writes it as text; a time or a
    duration as its integer (key_filter reads each back with the column's type)."""
    import pyarrow as pa

    if not value.is_valid:
        return None
    kind = key_kind(value.type)
    if kind == "float":
        number = value.as_py()
        return number if math.isfinite(number) else str(number)
    if kind == "int":
        return value.cast(pa.int64()).as_py()
    return value.cast(pa.string()).as_py() if kind == "text" else value.as_py()


def key_filter(keys: dict, schema: pa.Schema):
    """The filter selecting the rows of a partition's key values (key_to_json's), typed by `schema`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    condition = None
    for column, value in keys.items():
        field, t = pc.field(column), schema.field(column).type
        kind = key_kind(t)
        if value is None:
            term = field.is_null()
        elif kind == "float" and isinstance(value, str) and math.isnan(float(value)):
            term = pc.is_nan(field)  # NaN equals nothing, itself included
        elif kind == "json" or (kind == "float" and not isinstance(value, str)):
            term = field == value
        else:
            term = field == pa.scalar(value, pa.int64() if kind == "int" else pa.string()).cast(t)
        condition = term if condition is None else condition & term
    return condition
