"""Hive folders (`k=v/`, as pyarrow, DuckDB, polars and Spark write them): their keys as columns.

Parsed here, not by pyarrow's discovery, which infers a key's type from the files at hand
and fails on a key that is null (`__HIVE_DEFAULT_PARTITION__`) in all of them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    import pyarrow as pa

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # a null key's folder name (Hive, Spark, pyarrow, DuckDB)
_INT64_TEXT = re.compile(r"-?[0-9]{1,18}")  # a folder value read as int64 (Arrow casts it; no overflow)


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
