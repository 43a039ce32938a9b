"""What run() returned → the bytes of a committed part, in the output's format.

A result is a list (each element one succeeded item) or a DataFrame (each row one).
Parts are written so that the merge only concatenates: txt/jsonl parts are plain
lines, csv parts carry their header line (the merge keeps the first), parquet parts
are Parquet files whose row groups the merge copies into one file (runner/parquetjoin.py).

pyarrow and pandas are imported only for a result that needs them: a job whose run()
returns lists written as lines loads neither.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa


class ResultError(TypeError):
    """run() returned something the output cannot take."""


class ResultTypeError(ResultError):
    """run() returned neither a list nor a DataFrame: every attempt would, so it is not retried."""


class ItemError(NamedTuple):
    """An item that run() says failed: `item` names it (a file, a row's key, a request's
    custom_id), `error` says why; it is listed so in errors.jsonl."""

    item: str
    error: str


class Results(NamedTuple):
    """What run() returns to fail some items of its mini-batch while the others succeed.

    `rows` is what run() would return alone (a list or a DataFrame), and may hold rows for
    the failed items too (an error line each); `errors` has one ItemError per failed item.
    Of a mini-batch of n items, min(len(rows), n - len(errors)) succeed (n - len(errors)
    with resultsPerItem: many); the rest fail, those not named with a general error."""

    rows: Any
    errors: Sequence[ItemError] = ()


def split_results(result, items: int) -> tuple[Any, tuple[ItemError, ...]]:
    """(rows, failed items) of what run() returned; a plain list or DataFrame names none."""
    if not isinstance(result, Results):
        return result, ()
    errors = tuple(result.errors)
    if not all(isinstance(e, ItemError) for e in errors):
        raise ResultTypeError("run() returned Results whose errors are not all ItemError(item, error)")
    if len(errors) > items:
        raise ResultError(f"run() named {len(errors):,} failed items of a mini-batch of {items:,}")
    return result.rows, tuple(ItemError(str(e.item), str(e.error)) for e in errors)


class EncodedPart(NamedTuple):
    """A part's bytes and its columns (None for a plain list written as lines: txt, jsonl)."""

    data: bytes
    schema: pa.Schema | None


def result_length(result) -> int:
    if isinstance(result, (list, tuple)) or _is_table(result):
        return len(result)
    raise ResultTypeError(f"run() returned {type(result).__name__}; return a list or a pandas DataFrame "
                          "(one element or row per succeeded item), or Results(rows, errors)")


def _is_table(result) -> bool:
    """A pandas DataFrame or an Arrow table (whose module, if so, is loaded already)."""
    pd, pa = sys.modules.get("pandas"), sys.modules.get("pyarrow")
    return (pd is not None and isinstance(result, pd.DataFrame)) or (pa is not None and isinstance(result, pa.Table))


def empty_columns(result) -> pa.Schema | None:
    """The columns of a table run() returned without rows; None for a list."""
    return _table(result).schema if _is_table(result) and len(result.columns) else None


def _table(result, input_types: pa.Schema | None = None) -> pa.Table:
    """A DataFrame as it is; a list of dicts as records; any other list as one `result` column.
    `input_types`: the columns of the input read, for values pandas alone cannot tell."""
    import pyarrow as pa

    if isinstance(result, pa.Table):
        return result
    if isinstance(result, (list, tuple)):
        if result and all(isinstance(r, dict) for r in result):
            return pa.Table.from_pylist(list(result))
        try:
            return pa.table({"result": pa.array(list(result))})
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.table({"result": [str(r) for r in result]})
    try:
        table = from_pandas(result)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if input_types is None:
            raise
        table = _typed_as_input(result, input_types)
    return table if input_types is None else _narrowed_to_input(table, result, input_types)


def _narrowed_to_input(table: pa.Table, frame, input_types: pa.Schema) -> pa.Table:
    """`table` with each column pandas held as objects (decimals, structs, fixed-size binary)
    in the input's type of that name where pyarrow inferred another and the values fit it
    (a safe cast): decimal128(7, 2) read stays decimal128(7, 2), not the precision of the values."""
    import pyarrow as pa

    for i, (name, dtype) in enumerate(zip(frame.columns, frame.dtypes)):
        if dtype != object or name not in input_types.names or not isinstance(name, str):  # noqa: E721
            continue
        wanted, column = input_types.field(name).type, table.column(i)
        if column.type == wanted or pa.types.is_string(wanted) or pa.types.is_large_string(wanted) \
                or pa.types.is_dictionary(wanted):
            continue
        try:
            table = table.set_column(i, table.field(i).with_type(wanted), column.cast(wanted))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            if pa.types.is_map(wanted):  # a map of no pairs is inferred as list<null>: its pairs, typed
                with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError):
                    table = table.set_column(i, table.field(i).with_type(wanted),
                                             pa.array(frame.iloc[:, i], type=wanted, from_pandas=True))
    return table


def _typed_as_input(frame, input_types: pa.Schema) -> pa.Table:
    """A frame pyarrow cannot convert by itself: each column it cannot type (a Parquet map comes
    to pandas as lists of pairs) in the type of the input's column of that name."""
    import pyarrow as pa

    arrays = []
    for i, name in enumerate(frame.columns):
        column = frame.iloc[:, i]
        try:
            arrays.append(pa.array(column, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if name not in input_types.names:
                raise
            arrays.append(pa.array(column, type=input_types.field(name).type, from_pandas=True))
    return pa.Table.from_arrays(arrays, names=[str(name) for name in frame.columns])


def from_pandas(frame) -> pa.Table:
    """`pa.Table.from_pandas(frame, preserve_index=False)`, the same table (pandas metadata
    included), faster where a float column holds no NaN: it is taken as it is, zero copy,
    where pyarrow scans it value by value to make nulls of NaN (~1 ms per 250,000 rows and
    column). Only for frames of unique text column names and no object column (whose
    types only their values tell); others, and any error, go to pyarrow as they are."""
    import numpy as np
    import pyarrow as pa

    dtypes = list(frame.dtypes)
    floats = [isinstance(d, np.dtype) and d.kind == "f" for d in dtypes]
    objects = any(d == object for d in dtypes)  # noqa: E721 - numpy dtypes compare by ==
    if not any(floats) or objects or not frame.columns.is_unique \
            or not all(isinstance(name, str) for name in frame.columns):
        return pa.Table.from_pandas(frame, preserve_index=False)
    try:
        schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)  # the types, by dtype alone
        arrays = []
        for i, (field, is_float) in enumerate(zip(schema, floats)):
            column = frame.iloc[:, i]
            values = column.to_numpy() if is_float else None
            if values is not None and not np.isnan(values).any():
                arrays.append(pa.array(values, type=field.type))
            else:
                arrays.append(pa.array(column, type=field.type, from_pandas=True))
        return pa.Table.from_arrays(arrays, schema=schema)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.Table.from_pandas(frame, preserve_index=False)  # pyarrow's own error, if any


_CSV_BATCH_ROWS = 65536  # rows pyarrow formats at a time: 6-10% less CPU than its default 1,024, the same bytes


def _nested_as_json(table: pa.Table) -> pa.Table:
    """List, struct, map and interval columns as JSON text (pyarrow's csv writer has no text for them)."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type) or pa.types.is_interval(field.type):
            text = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(text, pa.string()))
    return table


def write_csv(table: pa.Table, header: bool, delimiter: str) -> bytes:
    """Unquoted where no value needs quotes (as pandas writes), RFC 4180 quoting otherwise;
    list, struct, map and interval values as JSON text."""
    import pyarrow as pa
    import pyarrow.csv as csv

    table = _nested_as_json(table)
    buf = io.BytesIO()
    try:
        csv.write_csv(table, buf, csv.WriteOptions(include_header=header, delimiter=delimiter,
                                                   batch_size=_CSV_BATCH_ROWS,
                                                   quoting_style="none", quoting_header="none"))
    except pa.ArrowInvalid:
        buf = io.BytesIO()
        csv.write_csv(table, buf, csv.WriteOptions(include_header=header, delimiter=delimiter,
                                                   batch_size=_CSV_BATCH_ROWS))
    return buf.getvalue()


def write_parquet(table: pa.Table) -> bytes:
    """A whole Parquet file, encoded here (in parallel workers) so that the merge only copies row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, write_page_index=False)  # no absolute offsets but the footer's (parquetjoin)
    return sink.getvalue().to_pybytes()


def encode_part(result, fmt: str, input_types: pa.Schema | None = None) -> EncodedPart:
    """`input_types`: the columns of the input read (the Arrow types of what pandas holds as objects)."""
    if fmt in ("txt", "jsonl") and isinstance(result, (list, tuple)):
        if fmt == "txt":
            return EncodedPart("".join(f"{r}\n" for r in result).encode(), None)
        return EncodedPart("".join(json.dumps(r, default=str) + "\n" for r in result).encode(), None)
    table = _table(result, input_types)
    if fmt == "txt":
        return EncodedPart(write_csv(table, header=False, delimiter=" "), table.schema)
    if fmt == "csv":
        return EncodedPart(write_csv(table, header=True, delimiter=","), table.schema)
    if fmt == "jsonl":
        return EncodedPart("".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist()).encode(),
                           table.schema)
    if fmt == "parquet":
        return EncodedPart(write_parquet(table), table.schema)
    raise ValueError(fmt)
