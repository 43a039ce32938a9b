"""Parquet input as other tools write it: every row read once, no column lost, the same values.

The class, not one example: files written by pyarrow, pandas, DuckDB and polars; hive
folders of each (null keys as `__HIVE_DEFAULT_PARTITION__`, polars' key also inside the
file, Spark's `_SUCCESS`); sibling files that store a column differently (a column added
later, int64 and double, dictionary and plain strings, string and large_string, one
instant under two time zones, two timestamp units); partition keys of every type. Each is
planned and read as the workers do (the plan through its JSON lines), and a few end to end
into every output format.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import io
import json
import math

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import run_local
from parallelrun.runner.planning import MiniBatch, Plan, PlanError, make_plan
from parallelrun.runner.readers import InputChangedError, PartitionMismatch, Reader
from parallelrun.runner.spec import load_spec

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 3, 31, 0, 30, tzinfo=UTC)


def spec_for(root, **extra):
    inp = {"uri": str(root), "type": "tabular", "format": "parquet", **extra.pop("input", {})}
    return load_spec({"spec": {"input": inp, "code": {"entryScript": "s.py"}, "output": {"uri": "/tmp/o/"}, **extra}})


def round_tripped(plan: Plan) -> Plan:
    """The plan as a worker has it: header and mini-batches through their JSON."""
    again = Plan.from_header(json.loads(json.dumps(plan.header())))
    again.mini_batches = [MiniBatch.from_json(mb.to_json()) for mb in plan.mini_batches]
    return again


def read_batches(plan: Plan, tmp_path) -> list[pa.Table]:
    plan = round_tripped(plan)
    reader = Reader(plan, str(tmp_path / "scratch"))
    tables = []
    for mb in plan.mini_batches:
        frame, items = reader.read(mb)  # what run() is given
        table = reader.read_table(mb)
        assert items == len(frame) == table.num_rows == mb.items
        assert list(frame.columns) == table.column_names
        tables.append(table)
    return tables


def rows_by_id(tables: list[pa.Table]) -> dict:
    """Every row read, by its id; an id read twice fails."""
    rows = {}
    for table in tables:
        for row in table.to_pylist():
            assert row["id"] not in rows, f"id {row['id']} read twice"
            rows[row["id"]] = row
    return rows


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# -- hive folders as each tool writes them ------------------------------------------------------

# id, a key with a null, and a value; ids 0..11
HIVE_ROWS = {"id": list(range(12)), "k": ["b", "a", None, "b", "a", "c", None, "b", "a", "c", "b", "a"],
             "v": [float(i) / 4 for i in range(12)]}


def _pyarrow_write_to_dataset(root):
    pq.write_to_dataset(pa.table(HIVE_ROWS), root, partition_cols=["k"])


def _pyarrow_write_dataset(root):
    ds.write_dataset(pa.table(HIVE_ROWS), root, format="parquet", partitioning=["k"], partitioning_flavor="hive")


def _pandas(root):
    pd.DataFrame(HIVE_ROWS).to_parquet(root, partition_cols=["k"])


def _duckdb(root):
    import duckdb

    con = duckdb.connect()
    con.register("t", pa.table(HIVE_ROWS))
    con.execute(f"COPY t TO '{root}' (FORMAT PARQUET, PARTITION_BY (k))")


def _polars(root):
    import polars as pl

    pl.DataFrame(HIVE_ROWS).write_parquet(root, partition_by=["k"])


def _spark_style(root):
    """Spark's layout: part files named by task, `k=__HIVE_DEFAULT_PARTITION__` for null, `_SUCCESS`."""
    table = pa.table(HIVE_ROWS)
    for key in ["a", "b", "c", None]:
        folder = root / f"k={key if key is not None else '__HIVE_DEFAULT_PARTITION__'}"
        folder.mkdir(parents=True)
        mask = pc.is_null(table["k"]) if key is None else pc.equal(table["k"], key)
        part = table.filter(mask).drop_columns(["k"])
        half = part.num_rows // 2
        pq.write_table(part.slice(0, half), folder / "part-00000-5f1c.c000.snappy.parquet")
        pq.write_table(part.slice(half), folder / "part-00001-5f1c.c000.snappy.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    (root / "._SUCCESS.crc").write_bytes(b"")


HIVE_WRITERS = {"pyarrow-write_to_dataset": _pyarrow_write_to_dataset, "pyarrow-write_dataset": _pyarrow_write_dataset,
                "pandas": _pandas, "duckdb": _duckdb, "polars": _polars, "spark": _spark_style}


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitionKeys", "by-rows"])
@pytest.mark.parametrize("writer", list(HIVE_WRITERS))
def test_hive_folders_of_every_writer(tmp_path, writer, partitioned):
    root = tmp_path / "data"
    HIVE_WRITERS[writer](root)
    extra = {"partitionKeys": ["k"]} if partitioned else {}
    plan = make_plan(spec_for(root, **extra))
    rows = rows_by_id(read_batches(plan, tmp_path))
    assert sorted(rows) == HIVE_ROWS["id"], "every row once"
    for i, key, value in zip(HIVE_ROWS["id"], HIVE_ROWS["k"], HIVE_ROWS["v"]):
        assert (rows[i]["k"], rows[i]["v"]) == (key, value)
    if partitioned:
        assert [mb.key for mb in plan.mini_batches] == [{"k": "a"}, {"k": "b"}, {"k": "c"}, {"k": None}]
        assert [mb.items for mb in plan.mini_batches] == [4, 4, 2, 2]


def test_hive_integer_keys_and_a_key_stored_in_the_files_too(tmp_path):
    """Integer folder names are integers; a key polars also keeps in the file takes the file's type."""
    root = tmp_path / "data"
    pq.write_to_dataset(pa.table({"id": [0, 1, 2, 3], "year": [2023, 2024, None, 2023]}), root, partition_cols=["year"])
    plan = make_plan(spec_for(root, partitionKeys=["year"]))
    assert [mb.key for mb in plan.mini_batches] == [{"year": 2023}, {"year": 2024}, {"year": None}]
    rows = rows_by_id(read_batches(plan, tmp_path))
    assert {i: r["year"] for i, r in rows.items()} == {0: 2023, 1: 2024, 2: None, 3: 2023}

    odd = tmp_path / "odd"  # not int64: text
    for value in ("1_000", "99999999999999999999", "+5"):
        (odd / f"n={value}").mkdir(parents=True)
        pq.write_table(pa.table({"id": [len(value)]}), odd / f"n={value}" / "p.parquet")
    rows = rows_by_id(read_batches(make_plan(spec_for(odd)), tmp_path))
    assert sorted(r["n"] for r in rows.values()) == sorted(["1_000", "99999999999999999999", "+5"])

    import polars as pl

    both = tmp_path / "polars"
    pl.DataFrame({"id": [0, 1, 2], "code": ["007", "010", "007"]}).write_parquet(both, partition_by=["code"])
    rows = rows_by_id(read_batches(make_plan(spec_for(both, partitionKeys=["code"])), tmp_path))
    assert {i: r["code"] for i, r in rows.items()} == {0: "007", 1: "010", 2: "007"}  # text, zeros kept


# -- partition keys of every type ---------------------------------------------------------------

KEY_TYPES = {
    "int": (pa.int64(), [3, -1, None, 3, 7, -1]),
    "string": (pa.string(), ["b", "a", None, "b", "ü", "a"]),
    "bool": (pa.bool_(), [True, False, None, True, False, True]),
    "float-nan": (pa.float64(), [0.5, float("nan"), None, 0.5, -2.0, float("nan")]),
    "float-inf": (pa.float32(), [float("inf"), 1.5, None, float("-inf"), 1.5, float("inf")]),
    "date": (pa.date32(), [datetime.date(2024, 1, 2), datetime.date(2023, 12, 31), None,
                           datetime.date(2024, 1, 2), datetime.date(2024, 1, 2), datetime.date(1999, 1, 1)]),
    "timestamp-tz": (pa.timestamp("us", "Europe/Berlin"), [T0, T0 + datetime.timedelta(hours=1), None, T0,
                                                           T0 - datetime.timedelta(days=400), T0]),
    "timestamp-ns": (pa.timestamp("ns"), [datetime.datetime(2024, 1, 1, 3), datetime.datetime(2024, 1, 1), None,
                                          datetime.datetime(2024, 1, 1, 3), datetime.datetime(2024, 1, 1),
                                          datetime.datetime(2024, 1, 1)]),
    "decimal": (pa.decimal128(7, 2), [decimal.Decimal("10.50"), decimal.Decimal("9.99"), None,
                                      decimal.Decimal("-1.00"), decimal.Decimal("10.50"), decimal.Decimal("9.99")]),
    "time": (pa.time64("us"), [datetime.time(1, 2), datetime.time(0, 0), None, datetime.time(1, 2),
                               datetime.time(23, 59), datetime.time(0, 0)]),
    "null": (pa.null(), [None] * 6),
}


@pytest.mark.parametrize("name", list(KEY_TYPES))
def test_partition_keys_of_every_type(tmp_path, name):
    """Keys survive the plan's JSON, every row is read once under its own key, and the key order is
    the values' order (then NaN, then null)."""
    type_, values = KEY_TYPES[name]
    table = pa.table({"id": pa.array(range(6), pa.int64()), "k": pa.array(values, type_),
                      "v": pa.array([f"v{i}" for i in range(6)])})
    root = tmp_path / "data"
    root.mkdir()
    pq.write_table(table.slice(0, 3), root / "a.parquet")
    pq.write_table(table.slice(3), root / "b.parquet")
    plan = make_plan(spec_for(root, partitionKeys=["k"]))
    json.loads(json.dumps([mb.to_json() for mb in plan.mini_batches], allow_nan=False))  # standard JSON
    tables = read_batches(plan, tmp_path)
    rows = rows_by_id(tables)
    assert sorted(rows) == list(range(6))
    for i, value in enumerate(values):
        assert same(rows[i]["k"], value) and rows[i]["v"] == f"v{i}"
    for batch in tables:  # one key per mini-batch
        keys = batch.column("k").to_pylist()
        assert all(same(k, keys[0]) for k in keys)
    firsts = [t.column("k")[0].as_py() for t in tables]
    distinct = [v for n, v in enumerate(values) if not any(same(v, w) for w in values[:n])]
    expected = sorted(v for v in distinct if v is not None and not same(v, float("nan")))
    expected += [v for v in distinct if same(v, float("nan"))] + ([None] if None in values else [])
    assert len(firsts) == len(expected) and all(same(a, b) for a, b in zip(firsts, expected))


def test_a_key_of_a_nested_type_is_refused_before_scoring(tmp_path):
    pq.write_table(pa.table({"id": [0], "k": [[1, 2]]}), tmp_path / "a.parquet")
    with pytest.raises(PlanError, match=r"spec.partitionKeys: k is list<element: int64>; partition by columns of text"):
        make_plan(spec_for(tmp_path, partitionKeys=["k"]))


# -- sibling files that store a column differently ------------------------------------------------

SIBLINGS = {
    "a column added later": (pa.table({"id": [0, 1], "g": [0, 1]}),
                             pa.table({"id": [2, 3], "g": [0, 1], "extra": ["e2", "e3"]})),
    "int64 and double": (pa.table({"id": [0, 1], "g": [0, 1], "x": pa.array([1, 2], pa.int64())}),
                         pa.table({"id": [2, 3], "g": [0, 1], "x": pa.array([1.5, 2.5])})),
    "dictionary and plain": (pa.table({"id": [0, 1], "g": [0, 1], "s": pa.array(["x", "y"]).dictionary_encode()}),
                             pa.table({"id": [2, 3], "g": [0, 1], "s": pa.array(["y", "z"])})),
    "string and large_string": (pa.table({"id": [0, 1], "g": [0, 1], "s": pa.array(["x", "y"])}),
                                pa.table({"id": [2, 3], "g": [0, 1], "s": pa.array(["y", "z"], pa.large_string())})),
    "two time zones": (pa.table({"id": [0, 1], "g": [0, 1], "t": pa.array([T0, T0], pa.timestamp("us", "UTC"))}),
                       pa.table({"id": [2, 3], "g": [0, 1],
                                 "t": pa.array([T0, T0], pa.timestamp("us", "Europe/Berlin"))})),
    "two timestamp units": (pa.table({"id": [0, 1], "g": [0, 1], "t": pa.array([T0, T0], pa.timestamp("ms", "UTC"))}),
                            pa.table({"id": [2, 3], "g": [0, 1], "t": pa.array([T0, T0], pa.timestamp("us", "UTC"))})),
    "columns in another order": (pa.table({"id": [0, 1], "g": [0, 1], "s": ["a", "b"]}),
                                 pa.table({"s": ["c", "d"], "g": [0, 1], "id": [2, 3]})),
}


def _write_siblings(root, first: pa.Table, second: pa.Table, writers: tuple[str, str]) -> None:
    root.mkdir()
    for name, table, writer in zip(("a.parquet", "b.parquet"), (first, second), writers):
        if writer == "pyarrow":
            pq.write_table(table, root / name)
        elif writer == "pandas":
            table.to_pandas().to_parquet(root / name)
        elif writer == "duckdb":
            import duckdb

            con = duckdb.connect()
            con.register("t", table)
            con.execute(f"COPY t TO '{root / name}' (FORMAT PARQUET)")
        else:
            import polars as pl

            pl.from_arrow(table).write_parquet(root / name)


@pytest.mark.parametrize("writers", [("pyarrow", "pyarrow"), ("pandas", "polars"), ("duckdb", "pyarrow")],
                         ids=lambda w: "+".join(w))
@pytest.mark.parametrize("partitioned", [True, False], ids=["partitionKeys", "by-rows"])
@pytest.mark.parametrize("case", list(SIBLINGS))
def test_sibling_files_are_read_with_one_set_of_columns(tmp_path, case, partitioned, writers):
    first, second = SIBLINGS[case]
    _write_siblings(tmp_path / "data", first, second, writers)
    plan = make_plan(spec_for(tmp_path / "data", **({"partitionKeys": ["g"]} if partitioned else {})))
    tables = read_batches(plan, tmp_path)
    names = list(dict.fromkeys(first.column_names + second.column_names))
    for table in tables:  # every mini-batch has every column, in one type
        assert sorted(table.column_names) == sorted(names)
        assert table.schema.remove_metadata() == tables[0].schema.remove_metadata()
    rows = rows_by_id(tables)
    assert sorted(rows) == [0, 1, 2, 3]
    for source in (first, second):
        for row in source.to_pylist():
            got = rows[row["id"]]
            for column in names:
                assert got[column] == row.get(column), column  # one instant, whatever its zone


def test_files_whose_column_types_have_nothing_in_common_are_refused_before_scoring(tmp_path):
    (tmp_path / "sub").mkdir()
    pq.write_table(pa.table({"id": [0], "x": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [1], "x": [[1, 2]]}), tmp_path / "sub" / "b.parquet")
    for extra in ({}, {"partitionKeys": ["id"]}):
        with pytest.raises(PlanError, match=r"spec.input: column 'x' is int64 in .*a.parquet but list<\w+: int64> "
                                            r"in .*b.parquet; write it in one type"):
            make_plan(spec_for(tmp_path, **extra))


def test_files_of_one_schema_plan_as_before(tmp_path):
    """No schema in the plan where every file has the same columns: nothing to cast when reading."""
    for k in range(3):
        pd.DataFrame({"id": range(k * 10, k * 10 + 10 + k)}).to_parquet(tmp_path / f"p{k}.parquet")  # pandas metadata differs
    plan = make_plan(spec_for(tmp_path))
    assert plan.schema is None and "schema" not in plan.header()["input"]


def test_a_partition_read_with_other_than_its_planned_rows_fails_loudly(tmp_path):
    pq.write_table(pa.table({"id": [0, 1], "k": [1.0, 1.0]}), tmp_path / "a.parquet")
    plan = make_plan(spec_for(tmp_path, partitionKeys=["k"]))
    wrong = MiniBatch.from_json(plan.mini_batches[0].to_json().replace('"items":2', '"items":3'))
    with pytest.raises(PartitionMismatch, match=r"partition \{'k': 1.0\}: 3 rows were planned but 2 were read"):
        Reader(plan, str(tmp_path / "scratch")).read(wrong)


def test_rows_planned_past_the_end_of_a_file_fail_loudly_where_no_stamp_tells_it_changed(tmp_path):
    """A plan without a file's stamp (size, version) cannot tell that the file lost rows: a
    mini-batch of rows it no longer has, wholly or in part, fails naming it, never reads short."""
    pq.write_table(pa.table({"id": range(100)}), tmp_path / "a.parquet", row_group_size=10)
    plan = round_tripped(make_plan(spec_for(tmp_path, miniBatchSize=30)))
    assert [mb.rows for mb in plan.mini_batches] == [(0, 30), (30, 60), (60, 90), (90, 100)]
    pq.write_table(pa.table({"id": range(50)}), tmp_path / "a.parquet", row_group_size=10)
    reader = Reader(plan, str(tmp_path / "scratch"))
    first, *past = (dataclasses.replace(mb, stamps=None) for mb in plan.mini_batches)
    assert reader.read(first)[0]["id"].tolist() == list(range(30))
    for mb in past:
        with pytest.raises(InputChangedError, match=r"a\.parquet.*: the input changed since planning"):
            reader.read(mb)


# -- end to end, into every output format ------------------------------------------------------------

SCORE = """
def run(df):
    return df
"""


def _mixed_input(root) -> pa.Table:
    """Hive folders with a null key, a later file adding a column, ints and doubles: what the output holds."""
    days = [("k=a", {"id": [0, 1], "x": pa.array([1, 2], pa.int64())}),
            ("k=__HIVE_DEFAULT_PARTITION__", {"id": [2], "x": pa.array([3], pa.int64())}),
            ("k=b", {"id": [3, 4], "x": pa.array([4.5, 5.5]), "extra": ["e3", "e4"]})]
    for folder, columns in days:
        (root / folder).mkdir(parents=True)
        pq.write_table(pa.table(columns), root / folder / "part-0.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    return pa.table({"id": [0, 1, 3, 4, 2], "x": [1.0, 2.0, 4.5, 5.5, 3.0], "extra": [None, None, "e3", "e4", None],
                     "k": ["a", "a", "b", "b", None]})


def _read_output(path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if fmt == "csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        return json.loads(frame.to_json(orient="records"))
    frame = pd.read_csv(path, sep=" ", header=None, names=["id", "x", "extra", "k"], keep_default_na=False,
                        na_values=[""])
    return json.loads(frame.to_json(orient="records"))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "txt"])
@pytest.mark.parametrize("partitioned", [True, False], ids=["partitionKeys", "by-rows"])
def test_end_to_end_every_row_once_no_column_lost(job, fmt, partitioned):
    expected = _mixed_input(job.data)
    job.script(SCORE)
    path = job.write(input={"type": "tabular", "format": "parquet"}, output={"format": fmt, "fileName": f"out.{fmt}"},
                     processCountPerNode=1, **({"partitionKeys": ["k"]} if partitioned else {}))
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["status"] == "Succeeded" and summary["items"] == {"succeeded": 5, "failed": 0}
    got = _read_output(job.final(f"out.{fmt}"), fmt)
    want = expected.to_pylist()
    if not partitioned:  # plan order: the folders sorted, `__HIVE_DEFAULT_PARTITION__` first
        want = [want[4], *want[:4]]
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for g, w in zip(got, want):
        assert {c: g.get(c) for c in w} == w


def test_a_duckdb_map_column_is_written_back(job):
    import duckdb

    duckdb.sql(f"COPY (SELECT i AS id, MAP {{'a': i, 'b': 2 * i}} AS m FROM range(3) t(i)) "
               f"TO '{job.data / 'm.parquet'}' (FORMAT PARQUET)")
    job.script(SCORE)
    for fmt in ("parquet", "jsonl"):
        path = job.write(input={"type": "tabular", "format": "parquet"},
                         output={"format": fmt, "fileName": f"out.{fmt}"}, processCountPerNode=1)
        summary = run_local(str(path), console=Console(file=io.StringIO()))
        assert summary["items"] == {"succeeded": 3, "failed": 0}
    table = pq.read_table(job.final("out.parquet"))
    assert table.column("m").type == pq.read_table(job.data / "m.parquet").column("m").type
    assert table.column("m").to_pylist() == [[("a", i), ("b", 2 * i)] for i in range(3)]
    lines = [json.loads(line) for line in job.final("out.jsonl").read_text().splitlines()]
    assert [line["m"] for line in lines] == [[["a", i], ["b", 2 * i]] for i in range(3)]


# -- a run whose every item failed ----------------------------------------------------------------------

EMPTY = """
def run(df):
    return df.iloc[:0]
"""

RAISES = """
def run(df):
    raise ValueError("no model for this")
"""


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "txt"])
@pytest.mark.parametrize("script", [EMPTY, RAISES], ids=["empty-table", "raises"])
def test_every_item_failed_succeeds_loudly(job, script, fmt):
    pq.write_table(pa.table({"id": pa.array(range(6), pa.int64()), "name": [f"n{i}" for i in range(6)]}),
                   job.data / "a.parquet", row_group_size=2)
    job.script(script)
    path = job.write(input={"type": "tabular", "format": "parquet"}, output={"format": fmt, "fileName": f"out.{fmt}"},
                     miniBatchSize=2, errorThreshold=-1, miniBatchErrorThreshold=-1, allowedFailedPercent=-1,
                     runMaxTry=1, processCountPerNode=1)
    shown = io.StringIO()
    summary = run_local(str(path), console=Console(file=shown, width=300))
    assert summary["status"] == "Succeeded" and summary["items"] == {"succeeded": 0, "failed": 6}
    assert summary["warning"]["reason"] == "AllItemsFailed"
    assert "every item failed (6 of 6)" in summary["warning"]["message"]
    assert "warning: every item failed (6 of 6)" in shown.getvalue()
    assert job.summary()["warning"] == summary["warning"]
    assert next(job.output.glob("_parallelrun/*/errors.jsonl")).read_text().count("\n") == 3
    out = job.final(f"out.{fmt}")
    if fmt == "parquet":  # a valid file, with the columns where run() told them
        table = pq.read_table(out)
        assert table.num_rows == 0 and table.column_names == (["id", "name"] if script == EMPTY else [])
    elif fmt == "csv":
        assert out.read_text() == ("id,name\n" if script == EMPTY else "")
    else:
        assert out.read_bytes() == b""


def test_a_run_with_a_scored_item_has_no_warning(job):
    pq.write_table(pa.table({"id": [0, 1]}), job.data / "a.parquet", row_group_size=1)
    job.script("def run(df):\n    return df[df['id'] == 1]\n")
    path = job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=1, errorThreshold=-1,
                     processCountPerNode=1)
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 1, "failed": 1} and "warning" not in summary


@pytest.mark.parametrize("name", ["float-nan", "date", "timestamp-tz", "decimal", "bool", "null"])
def test_end_to_end_keys_of_every_type_keep_their_values(job, name):
    """Each key's rows once, in key order, with the key's type and values unchanged in a Parquet output."""
    type_, values = KEY_TYPES[name]
    table = pa.table({"id": pa.array(range(6), pa.int64()), "k": pa.array(values, type_)})
    pq.write_table(table.slice(0, 3), job.data / "a.parquet")
    pq.write_table(table.slice(3), job.data / "b.parquet")
    job.script(SCORE)
    path = job.write(input={"type": "tabular", "format": "parquet"}, partitionKeys=["k"], processCountPerNode=1,
                     output={"format": "parquet", "fileName": "out.parquet"})
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 6, "failed": 0}
    out = pq.read_table(job.final("out.parquet"))
    assert out.column("k").type == type_
    assert sorted(out.column("id").to_pylist()) == list(range(6))
    for i, k in zip(out.column("id").to_pylist(), out.column("k").to_pylist()):
        nan = isinstance(values[i], float) and math.isnan(values[i])
        assert same(k, None if nan else values[i])  # run()'s DataFrame holds NaN and null alike: written as null


def test_other_arrow_types_keep_their_type_and_values_through_run(job):
    """What pandas holds as objects (decimals, maps, structs, fixed-size binary, lists) is written in
    the input's type; pandas' own conventions stay (an integer column with nulls is a float)."""
    columns = {
        "id": pa.array([0, 1, 2], pa.int64()),
        "dec": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-20.25")], pa.decimal128(7, 2)),
        "map": pa.array([[("a", 1)], None, []], pa.map_(pa.string(), pa.int32())),
        "list": pa.array([[1, 2], None, []], pa.list_(pa.int16())),
        "struct": pa.array([{"x": 1, "y": "a"}, None, {"x": -3, "y": None}],
                           pa.struct([("x", pa.int8()), ("y", pa.string())])),
        "date": pa.array([datetime.date(2024, 1, 1), None, datetime.date(1970, 1, 1)], pa.date32()),
        "time": pa.array([datetime.time(1, 2), None, datetime.time(0)], pa.time64("us")),
        "ts": pa.array([T0, None, T0], pa.timestamp("ms", "Europe/Berlin")),
        "large": pa.array(["a", None, "ü"], pa.large_string()),
        "bin": pa.array([b"\x00\xff", None, b""], pa.binary()),
        "fsb": pa.array([b"ab", None, b"cd"], pa.binary(2)),
        "dur": pa.array([datetime.timedelta(seconds=3), None, datetime.timedelta(0)], pa.duration("s")),
        "bool": pa.array([True, None, False]),
    }
    table = pa.table(columns)
    pq.write_table(table, job.data / "a.parquet", row_group_size=1)
    job.script(SCORE)
    path = job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=1, processCountPerNode=1,
                     output={"format": "parquet", "fileName": "out.parquet"})
    assert run_local(str(path), console=Console(file=io.StringIO()))["items"] == {"succeeded": 3, "failed": 0}
    out = pq.read_table(job.final("out.parquet"))
    assert out.schema.remove_metadata() == table.schema
    assert out.to_pylist() == table.to_pylist()


def test_selected_columns_of_files_that_lack_some(tmp_path):
    """`input.options.columns` names a column a later file added: the earlier file's rows have it empty."""
    pq.write_table(pa.table({"id": [0, 1], "x": [1, 2]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [2], "x": [3], "extra": ["e"]}), tmp_path / "b.parquet")
    for extra in ({}, {"partitionKeys": ["x"]}):
        plan = make_plan(spec_for(tmp_path, input={"options": {"columns": ["id", "extra"]}}, **extra))
        rows = rows_by_id(read_batches(plan, tmp_path))
        assert rows == {0: {"id": 0, "extra": None}, 1: {"id": 1, "extra": None}, 2: {"id": 2, "extra": "e"}}
