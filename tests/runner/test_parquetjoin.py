"""Joining Parquet files by copying row groups: the footer's Thrift round-trips, offsets move, nothing is re-encoded."""

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parallelrun.runner.parquetjoin import Joiner, NotJoinable, _struct, read_file, read_footer, row_group_rows


def parquet(frame: pd.DataFrame, **options) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, **options)
    return buf.getvalue()


def footer(data: bytes) -> tuple[list, int]:
    """A file's FileMetaData and where its footer starts (the end of its body)."""
    meta, body = read_file(io.BytesIO(data))
    return meta, 4 + body


def frame(start: int, n: int = 1000) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(start, start + n, dtype=float),
                         "label": pd.Categorical.from_codes(np.arange(n) % 3, ["a", "b", "c"]),
                         "name": [f"r{i}" for i in range(start, start + n)], "flag": np.arange(n) % 2 == 0})


def joined(*files: bytes) -> bytes:
    out = io.BytesIO()
    joiner = Joiner(out)
    for data in files:
        joiner.add(data)
    joiner.close()
    return out.getvalue()


def test_footer_decodes_and_encodes_to_the_same_bytes():
    data = parquet(frame(0), row_group_size=300, write_page_index=True)
    meta, start = footer(data)
    assert _struct(meta) == data[start:-8]


def test_joined_file_has_every_row_group_in_order_readable_and_filterable():
    files = [parquet(frame(0), row_group_size=400), parquet(frame(1000), row_group_size=400),
             parquet(frame(2000, 10))]
    data = joined(*files)
    pf = pq.ParquetFile(io.BytesIO(data))
    assert [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)] == \
        [400, 400, 200, 400, 400, 200, 10]
    assert pf.metadata.num_rows == 2010
    table = pf.read()
    assert table["x"].to_pylist() == list(range(2010)) and table["name"].to_pylist()[1500] == "r1500"
    assert table.schema.field("label").type == pa.dictionary(pa.int8(), pa.string())
    assert table.to_pandas().equals(pd.concat([frame(0), frame(1000), frame(2000, 10)], ignore_index=True))
    assert pq.read_table(io.BytesIO(data), filters=[("x", ">=", 1990)]).num_rows == 20  # statistics moved too
    assert pf.read_row_group(4)["x"][0].as_py() == 1400


def test_the_bytes_of_the_column_chunks_are_copied_unchanged():
    files = [parquet(frame(0)), parquet(frame(1000))]
    data = joined(*files)
    second_body = files[1][4:footer(files[1])[1]]
    assert data[4 + footer(files[0])[1] - 4:].startswith(second_body)


def test_another_schema_or_no_parquet_is_refused_before_anything_is_written():
    out = io.BytesIO()
    joiner = Joiner(out)
    joiner.add(parquet(frame(0)))
    size = len(out.getvalue())
    with pytest.raises(NotJoinable, match="another Parquet schema"):
        joiner.add(parquet(frame(0).assign(x=1)))  # x: int64
    with pytest.raises(NotJoinable, match="not a Parquet file"):
        joiner.add(b"PAR1 nothing PAR1")
    assert len(out.getvalue()) == size
    joiner.close()
    assert pq.read_table(io.BytesIO(out.getvalue())).num_rows == 1000


def test_a_page_index_is_refused_its_page_locations_would_point_into_the_wrong_file():
    joiner = Joiner(io.BytesIO())
    joiner.add(parquet(frame(0)))
    with pytest.raises(NotJoinable, match="page index"):
        joiner.add(parquet(frame(1000), write_page_index=True))


def test_nothing_to_join():
    with pytest.raises(NotJoinable):
        Joiner(io.BytesIO()).close()


@pytest.mark.parametrize("columns, row_group", [(1, 300), (20, 7)])  # a footer of ~1 KiB; of ~300 KiB: two reads
def test_row_counts_come_from_the_footer_alone(columns, row_group):
    data = parquet(pd.DataFrame({f"c{i}": np.arange(1000) for i in range(columns)}), row_group_size=row_group)
    f = io.BytesIO(data)
    meta, length = read_footer(f)
    assert length == len(data) - 8 - footer(data)[1]
    expected = pq.ParquetFile(io.BytesIO(data)).metadata
    assert row_group_rows(meta) == [expected.row_group(g).num_rows for g in range(expected.num_row_groups)]
    assert sum(row_group_rows(meta)) == 1000


def test_row_counts_of_an_empty_file_and_of_no_parquet():
    assert sum(row_group_rows(read_footer(io.BytesIO(parquet(frame(0, 0))))[0])) == 0
    for data in (b"", b"PAR1", b"x" * 100, b"PAR1" + b"\xff\xff\xff\x7fPAR1"):
        with pytest.raises(NotJoinable, match="not a Parquet file"):
            read_footer(io.BytesIO(data))
