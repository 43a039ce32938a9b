"""Outputs: AML's txt, csv with one header, parquet, jsonl, summaryOnly; always in plan order."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import run_local
from parallelrun.runner.outputs import from_pandas

TABULAR = """
def run(df):
    df["double"] = df["v"] * 2
    return df
"""

LIST = """
import time, random
from pathlib import Path

def run(paths):
    time.sleep(random.random() / 50)  # finish out of order
    return [Path(p).read_text().strip() for p in paths]
"""


def quiet_run(path):
    return run_local(str(path), console=Console(file=io.StringIO()))


@pytest.fixture
def tabular(job):
    for k in range(3):
        pd.DataFrame({"name": [f"n {k} {i}" for i in range(100)], "v": range(k * 100, k * 100 + 100)}).to_parquet(
            job.data / f"part{k}.parquet", row_group_size=10)
    job.script(TABULAR)
    return job


def spec(fmt, **extra):
    return {"input": {"type": "tabular", "format": "parquet"}, "miniBatchSize": 10, "nodeCount": 2,
            "output": {"format": fmt, "fileName": f"out.{fmt}"}, **extra}


def test_txt_is_amls_space_separated_rows(tabular):
    quiet_run(tabular.write(**spec("txt")))
    lines = tabular.final("out.txt").read_text().splitlines()
    assert len(lines) == 300
    assert lines[0] == '"n 0 0" 0 0' and lines[-1] == '"n 2 99" 299 598'


def test_csv_has_one_header_and_plan_order(tabular):
    summary = quiet_run(tabular.write(**spec("csv")))
    assert summary["miniBatches"]["total"] == 30
    df = pd.read_csv(tabular.final("out.csv"))
    assert list(df.columns) == ["name", "v", "double"]
    assert df["v"].tolist() == list(range(300)) and df["double"].tolist() == [2 * v for v in range(300)]


def test_csv_header_is_unquoted_when_the_first_parts_values_needed_quotes(tabular):
    tabular.script("""
def run(df):
    if df["v"].iloc[0] == 0:  # this part is written with quotes, its header too
        df["name"] = df["name"].str.replace(" ", ",")
    return df.assign(double=df["v"] * 2)
""")
    quiet_run(tabular.write(**spec("csv")))
    text = tabular.final("out.csv").read_text()
    assert text.startswith('name,v,double\n"n,0,0",0,0\n') and "\nn 0 10,10,20\n" in text
    assert pd.read_csv(io.StringIO(text))["v"].tolist() == list(range(300))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_merge_of_parts_of_one_schema_loads_no_pyarrow(tabular, monkeypatch, fmt):
    from parallelrun.runner import local

    merge = local.merge

    def without_pyarrow(*args, **kwargs):
        with monkeypatch.context() as m:
            for name in [n for n in sys.modules if n == "pyarrow" or n.startswith("pyarrow.")]:
                m.setitem(sys.modules, name, None)  # importing it raises ImportError
            return merge(*args, **kwargs)

    monkeypatch.setattr(local, "merge", without_pyarrow)
    quiet_run(tabular.write(**spec(fmt)))
    out = tabular.final(f"out.{fmt}")
    frame = pd.read_csv(out) if fmt == "csv" else pq.read_table(out).to_pandas()
    assert frame["double"].tolist() == [2 * v for v in range(300)]


def test_parquet(tabular):
    quiet_run(tabular.write(**spec("parquet")))
    table = pq.read_table(tabular.final("out.parquet"))
    assert table.column_names == ["name", "v", "double"] and table["v"].to_pylist() == list(range(300))


def test_parquet_row_groups_are_copied_from_the_parts_and_mixed_columns_realigned(tabular):
    tabular.script("""
def run(df):
    if df["v"].iloc[0] >= 150:  # later mini-batches add a column and return floats
        return df.assign(v=df["v"] * 1.0, extra="x")
    return df
""")
    quiet_run(tabular.write(**spec("parquet")))
    meta = pq.ParquetFile(tabular.final("out.parquet")).metadata
    assert meta.num_row_groups == 30 and meta.num_rows == 300  # one row group per mini-batch, none re-cut
    table = pq.read_table(tabular.final("out.parquet"))
    assert table.column_names == ["name", "v", "extra"] and str(table.schema.field("v").type) == "double"
    assert table["v"].to_pylist() == list(range(300))
    assert table["extra"].to_pylist() == [None] * 150 + ["x"] * 150


def test_a_part_the_joiner_refuses_is_encoded_anew(tabular, monkeypatch):
    """A part with a page index (its page locations would point into the wrong file) is not
    sent as it is: decoded and encoded without one, in its place."""
    from parallelrun.runner import local

    merge = local.merge

    def with_a_page_index(spec, plan, fs, layout, write_final=True):
        root = Path(layout.root)
        for commits in root.glob("commits/*/*.jsonl"):
            records = [json.loads(line) for line in commits.read_text().splitlines()]
            for r in records:
                if r["id"] == 3:
                    name, offset, length = r["part"]
                    with open(root / "parts" / name, "rb") as f:
                        f.seek(offset)
                        table = pq.read_table(io.BytesIO(f.read(length)))
                    pq.write_table(table, root / "parts" / "g-indexed.parquet", write_page_index=True)
                    r["part"] = ["g-indexed.parquet", 0, (root / "parts" / "g-indexed.parquet").stat().st_size]
            commits.write_text("".join(json.dumps(r) + "\n" for r in records))
        return merge(spec, plan, fs, layout, write_final)

    monkeypatch.setattr(local, "merge", with_a_page_index)
    quiet_run(tabular.write(**spec("parquet")))
    out = pq.ParquetFile(tabular.final("out.parquet"))
    assert out.metadata.num_row_groups == 30 and out.read()["double"].to_pylist() == [2 * v for v in range(300)]


def test_parquet_dataset_is_a_folder_of_ordered_parts(tabular):
    summary = quiet_run(tabular.write(**spec("parquet", output={"format": "parquet", "fileName": "scored",
                                                                 "layout": "dataset"})))
    folder = tabular.final("scored")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["_SUCCESS"] + [f"part-{i:05d}.parquet" for i in range(30)]
    assert summary["output"]["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert pq.read_table(folder)["double"].to_pylist() == [2 * v for v in range(300)]
    quiet_run(tabular.write(**spec("parquet", miniBatchSize=100, output={
        "format": "parquet", "fileName": "scored", "layout": "dataset"})))  # a rerun replaces the folder
    assert len(list(folder.glob("part-*.parquet"))) == 3


def test_dataset_layout_is_for_parquet(tabular):
    from parallelrun.runner.spec import SpecError

    with pytest.raises(SpecError, match="spec.output.layout: dataset .* is for parquet output"):
        quiet_run(tabular.write(**spec("csv", output={"format": "csv", "layout": "dataset"})))


def test_jsonl(tabular):
    quiet_run(tabular.write(**spec("jsonl")))
    rows = [json.loads(line) for line in tabular.final("out.jsonl").read_text().splitlines()]
    assert rows[5] == {"name": "n 0 5", "v": 5, "double": 10} and len(rows) == 300


def test_summary_only_writes_counts_not_rows(tabular):
    summary = quiet_run(tabular.write(input={"type": "tabular", "format": "parquet"},
                                      output={"action": "summaryOnly"}))
    assert summary["output"] is None and summary["items"]["succeeded"] == 300
    assert not tabular.final().exists()
    assert not list(tabular.output.glob("_parallelrun/*/parts/*"))


def test_list_results_keep_plan_order_across_shards_and_processes(job):
    names = job.files(50)
    job.script(LIST)
    quiet_run(job.write(miniBatchSize=2, nodeCount=3))
    assert job.final().read_text().split() == [str(i) for i in range(50)]
    assert len(names) == 50


def test_list_results_as_csv_get_a_result_column(job):
    job.files(4)
    job.script(LIST)
    quiet_run(job.write(output={"format": "csv"}))
    assert job.final().read_text().splitlines() == ["result", "0", "1", "2", "3"]


FRAMES = {
    "floats and a categorical": lambda: pd.DataFrame({"x": [0.5, 1.5, -2.0], "y": [1.0, 2.0, 3.0]}).assign(
        label=pd.Categorical.from_codes([0, 1, 0], ["a", "b"])),
    "NaN and float32, ints, bools": lambda: pd.DataFrame({"a": [1.0, float("nan"), 3.0], "b": np.float32([1, 2, 3]),
                                                          "i": [1, 2, 3], "t": [True, False, True]}),
    "inf and a zoned time": lambda: pd.DataFrame({"a": [float("inf"), -float("inf"), 0.0], "ts": pd.to_datetime(
        ["2020-01-01", None, "2021-01-01"], utc=True)}),
    "text, an object column": lambda: pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"], "o": [{"k": 1}, None]}),
    "nullable dtypes, an index": lambda: pd.DataFrame({"a": [1.0, 2.0], "n": pd.array([1, None], dtype="Int64"),
                                                       "f": pd.array([1.5, None], dtype="Float64")}, index=[5, 7]),
    "no rows": lambda: pd.DataFrame({"a": np.array([], dtype=float)}),
    "names that are no text": lambda: pd.DataFrame({0: [1.0], 1: [2.0]}),
}


@pytest.mark.parametrize("name", FRAMES)
def test_a_result_frame_becomes_the_table_pyarrow_makes_of_it(name):
    """outputs.from_pandas skips pyarrow's NaN scan of floats without NaN: the same table and metadata."""
    frame = FRAMES[name]()
    expected = pa.Table.from_pandas(frame, preserve_index=False)
    table = from_pandas(frame)
    assert table.equals(expected) and table.schema.equals(expected.schema, check_metadata=True)


@pytest.mark.parametrize("values", [["a", "b"], ['say "hi"', "a,b"]], ids=["plain", "needs-quotes"])
def test_csv_of_many_batches_is_the_bytes_pyarrows_default_writer_makes(values):
    """The part encoder formats 65,536 rows at a time, not pyarrow's 1,024: the same bytes,
    header once, quoted values (the RFC 4180 fallback) alike."""
    import pyarrow.csv as csv

    from parallelrun.runner.outputs import write_csv

    rows = 150_000
    table = pa.table({"x": np.arange(rows) / 7, "label": pa.array(values * (rows // 2))})
    quoting = {} if values[0].startswith("say") else {"quoting_style": "none", "quoting_header": "none"}
    expected = io.BytesIO()
    csv.write_csv(table, expected, csv.WriteOptions(include_header=True, **quoting))
    assert write_csv(table, True, ",") == expected.getvalue()
