"""Partition key values (`partitionKeys`) as the plan's JSON holds them, and the filter that
reads a partition's rows back with the column's type: keys of every type a key may have,
null and NaN keys included.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .schemas import SchemaClash

if TYPE_CHECKING:
    import pyarrow as pa


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
