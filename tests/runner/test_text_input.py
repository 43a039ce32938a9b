"""csv and jsonl input: whatever the writer, dialect, compression and miniBatchSize, run()
sees every row exactly once, with the same columns, types and values.

Cuts never fall inside a quoted value (runner/rowends.py), compressed files are read
decompressed, and the column types are fixed once per job when it is planned
(runner/column_types.py), so no cut changes a DataFrame.
"""

from __future__ import annotations

import datetime
import decimal
import gzip
import io
import json
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from rich.console import Console

from parallelrun.runner import column_types
from parallelrun.runner.column_types import SchemaMismatch
from parallelrun.runner.local import run_local
from parallelrun.runner.outputs import encode_part
from parallelrun.runner.plan import Plan, PlanError, make_plan
from parallelrun.runner.readers import Reader
from parallelrun.runner.spec import SpecError, load_spec

SIZES = [1, 2, 3, 7, "30B", "64B", "1MB"]

# Values that break a naive cut or a per-batch type guess: a quoted newline (CRLF too), a
# delimiter, quotes and a semicolon in values, codes that look like numbers until the last row.
REFERENCE = pd.DataFrame({
    "id": list(range(9)),
    "code": ["007", "008", "010", "011", "012", "013", "014", "015", "A09"],
    "txt": ["plain", "two\nlines", "a, comma", 'say "hi"', "semi;colon", "crlf\r\nline", "ünïcödé", "x", "end"],
    "score": [0.5, 1.0, None, 2.25, 3.0, 4.5, 5.0, 6.0, 7.5],
})


def spec_for(path, fmt, size, **options):
    return load_spec({"spec": {"input": {"uri": str(path), "type": "tabular", "format": fmt, "options": options},
                               "code": {"entryScript": "s.py"}, "output": {"uri": "/tmp/o/"}, "miniBatchSize": size}})


def frames(spec, tmp_path) -> list[pd.DataFrame]:
    """The DataFrames run() gets, through a plan written and read back as the pods read it."""
    planned = make_plan(spec)
    plan = Plan.from_header(json.loads(json.dumps(planned.header())))
    reader = Reader(plan, str(tmp_path / "scratch"))
    return [reader.read(mb)[0] for mb in planned.mini_batches]


def assert_same_at_every_size(path, fmt, tmp_path, sizes=SIZES, **options) -> pd.DataFrame:
    """Every size gives one row per input row, each once, with one set of dtypes; returns the rows."""
    seen = None
    for size in sizes:
        batches = frames(spec_for(path, fmt, size, **options), tmp_path)
        assert len({tuple(map(str, b.dtypes)) for b in batches}) == 1, (size, [b.dtypes for b in batches])
        whole = pd.concat(batches, ignore_index=True)
        if seen is None:
            seen = whole
        else:
            pd.testing.assert_frame_equal(whole, seen, obj=f"miniBatchSize {size!r}")
    return seen


def assert_reference(rows: pd.DataFrame, txt: bool = True) -> None:
    assert rows["id"].tolist() == REFERENCE["id"].tolist()
    assert rows["code"].tolist() == REFERENCE["code"].tolist()  # text: 007 stays 007 in every mini-batch
    if txt:
        assert rows["txt"].tolist() == REFERENCE["txt"].tolist()
    assert rows["score"].isna().tolist() == REFERENCE["score"].isna().tolist()
    assert rows["score"].fillna(-1).tolist() == REFERENCE["score"].fillna(-1).tolist()


def _polars(df):
    return pl.from_pandas(df)


CSV_WRITERS = {
    "pandas": lambda df, path: df.to_csv(path, index=False),
    "pandas-crlf": lambda df, path: df.to_csv(path, index=False, lineterminator="\r\n"),
    "pandas-quote-all": lambda df, path: df.to_csv(path, index=False, quoting=1),
    "pandas-bom": lambda df, path: df.to_csv(path, index=False, encoding="utf-8-sig"),
    "pyarrow": lambda df, path: pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), str(path)),
    "duckdb": lambda df, path: duckdb.sql("SELECT * FROM df").write_csv(str(path)),
    "polars": lambda df, path: _polars(df).write_csv(path),
}


@pytest.mark.parametrize("writer", sorted(CSV_WRITERS))
def test_csv_of_any_writer_gives_the_same_rows_and_types_at_every_mini_batch_size(tmp_path, writer):
    data = tmp_path / "data"
    data.mkdir()
    CSV_WRITERS[writer](REFERENCE, data / "a.csv")
    rows = assert_same_at_every_size(data, "csv", tmp_path)
    assert_reference(rows)


def test_a_semicolon_dialect_gives_the_same_rows_at_every_size(tmp_path):
    (tmp_path / "data").mkdir()
    REFERENCE.to_csv(tmp_path / "data" / "a.csv", index=False, sep=";")
    assert_reference(assert_same_at_every_size(tmp_path / "data", "csv", tmp_path, delimiter=";"))


def test_a_header_only_csv_has_no_mini_batch_and_an_empty_one_beside_it_is_none_either(tmp_path):
    (tmp_path / "a.csv").write_text("id,code\n")
    (tmp_path / "b.csv").write_text("")
    (tmp_path / "c.csv").write_text("id,code\n1,x\n")
    for size in SIZES:
        rows = pd.concat(frames(spec_for(tmp_path, "csv", size), tmp_path))
        assert rows.to_dict("records") == [{"id": 1, "code": "x"}]


def test_the_issue_quoted_newline_is_one_row_never_a_made_up_one(job):
    """`1,"x⏎7, made up",3` cut by 2 rows: no row 7, rows 0 and 1 kept, all succeeded."""
    (job.data / "a.csv").write_text('id,txt,n\n0,a,0\n1,"x\n7, made up",3\n2,b,6\n3,c,9\n')
    job.script("def run(df):\n    return df\n")
    for size in (2, "10B"):
        summary = run_local(str(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=size,
                                          output={"format": "parquet", "fileName": f"out{size}.parquet"})),
                            console=Console(file=io.StringIO()), fresh=True)
        assert summary["items"] == {"succeeded": 4, "failed": 0}
        out = pd.read_parquet(job.final(f"out{size}.parquet"))
        assert out.to_dict("records") == [{"id": 0, "txt": "a", "n": 0}, {"id": 1, "txt": "x\n7, made up", "n": 3},
                                          {"id": 2, "txt": "b", "n": 6}, {"id": 3, "txt": "c", "n": 9}]


def test_a_stray_quote_keeps_the_file_whole_rather_than_cut_it_wrong(tmp_path):
    """`5" screen` unquoted makes the quotes' parity lie about the quoted newline after it."""
    (tmp_path / "a.csv").write_text('id,txt\n1,5" screen\n2,"a\nb"\n3,c\n')
    for size in (1, "8B"):
        planned = make_plan(spec_for(tmp_path, "csv", size))
        assert len(planned.mini_batches) == 1
        rows = pd.concat(frames(spec_for(tmp_path, "csv", size), tmp_path))
        assert rows["txt"].tolist() == ['5" screen', "a\nb", "c"]


@pytest.mark.parametrize("block", [2, 5, 2**20])
def test_whitespace_lines_of_jsonl_are_no_rows_when_planning_by_rows(tmp_path, monkeypatch, block):
    from parallelrun.runner import rowends

    monkeypatch.setattr(rowends, "BLOCK", block)
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1}\n \t \n{"id": 3}\r\n\r\n  {"id": 5}  \n\n{"id": 7}\n   ')
    for rows in (1, 2, 3):
        planned = make_plan(spec_for(tmp_path, "jsonl", rows))
        assert planned.total_items == 4
        reader = Reader(planned, str(tmp_path / "scratch"))
        assert [reader.read(mb)[1] for mb in planned.mini_batches] == [mb.items for mb in planned.mini_batches]
        assert pd.concat(reader.read(mb)[0] for mb in planned.mini_batches)["id"].tolist() == [1, 3, 5, 7]


def test_blank_crlf_lines_are_no_rows_when_planning_by_rows(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"id,x\r\n1,2\r\n\r\n3,4\r\n\r\n\r\n5,6\r\n7,8")
    for rows in (1, 2, 3):
        planned = make_plan(spec_for(tmp_path, "csv", rows))
        assert planned.total_items == 4
        assert [mb.items for mb in planned.mini_batches] == [min(rows, 4 - k) for k in range(0, 4, rows)]
        assert pd.concat(frames(spec_for(tmp_path, "csv", rows), tmp_path))["id"].tolist() == [1, 3, 5, 7]


# -- jsonl ------------------------------------------------------------------------

JSONL_REFERENCE = REFERENCE.assign(n=[1, 2, 3, 4, 5, 6, 7, 8, 9.5],  # ints until the last row
                                   maybe=[None, None, None, None, None, None, None, "late", None])

JSONL_WRITERS = {
    "pandas": lambda df, path: df.to_json(path, orient="records", lines=True, force_ascii=False),
    "duckdb": lambda df, path: duckdb.sql(f"COPY (SELECT * FROM df) TO '{path}' (FORMAT json)"),
    "polars": lambda df, path: _polars(df).write_ndjson(path),
}


@pytest.mark.parametrize("writer", sorted(JSONL_WRITERS))
def test_jsonl_of_any_writer_gives_the_same_rows_and_types_at_every_mini_batch_size(tmp_path, writer):
    data = tmp_path / "data"
    data.mkdir()
    JSONL_WRITERS[writer](JSONL_REFERENCE, data / "a.jsonl")
    rows = assert_same_at_every_size(data, "jsonl", tmp_path)
    assert_reference(rows)
    assert rows["n"].tolist() == JSONL_REFERENCE["n"].tolist() and rows["n"].dtype == "float64"
    assert rows["maybe"].tolist()[7] == "late"


# -- compressed input -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("compression", ["gz", "bz2", "xz", "zst"])
def test_compressed_files_are_read_decompressed_one_mini_batch_each(tmp_path, fmt, compression):
    data = tmp_path / "data"
    data.mkdir()
    halves = REFERENCE.iloc[:5], REFERENCE.iloc[5:]
    for k, half in enumerate(halves):
        path = data / f"part{k}.{fmt}.{compression}"
        if fmt == "csv":
            half.to_csv(path, index=False)
        else:
            half.to_json(path, orient="records", lines=True, force_ascii=False)
    for size in SIZES:
        planned = make_plan(spec_for(data, fmt, size))
        assert len(planned.mini_batches) == 2  # a compressed file is not cut
    rows = assert_same_at_every_size(data, fmt, tmp_path)
    assert_reference(rows)


def test_a_compressed_file_no_codec_reads_is_a_planning_error_naming_it(tmp_path):
    (tmp_path / "a.csv.br").write_bytes(b"\x1b\x00\x00")
    with pytest.raises(PlanError, match=r"a\.csv\.br is compressed \(\.br\).*decompress it"):
        make_plan(spec_for(tmp_path, "csv", "1MB"))


def test_gz_input_runs_end_to_end_and_counts_its_rows(job):
    REFERENCE.to_csv(job.data / "a.csv.gz", index=False)
    job.script("def run(df):\n    return df[['id', 'code']]\n")
    summary = run_local(str(job.write(input={"type": "tabular", "format": "csv"}, output={"format": "csv"})),
                        console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 9, "failed": 0}
    assert pd.read_csv(job.final(), dtype=str)["code"].tolist() == REFERENCE["code"].tolist()


def test_a_files_job_hands_a_gz_file_over_as_it_is(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(b"\x1f\x8b not read")
    plan = make_plan(load_spec({"spec": {"input": {"uri": str(tmp_path), "type": "files"},
                                         "code": {"entryScript": "s.py"}, "output": {"uri": "/tmp/o/"}}}))
    paths, _ = Reader(plan, str(tmp_path / "scratch")).read(plan.mini_batches[0])
    assert Path(paths[0]).read_bytes() == b"\x1f\x8b not read"


# -- column types fixed at plan time ----------------------------------------------------


def test_the_plan_records_the_column_types(tmp_path):
    (tmp_path / "a.csv").write_text("id,code\n0,007\n1,008\n2,A09\n")
    (tmp_path / "b.csv").write_text("id,code\n3,4.5\n4,\n")
    header = make_plan(spec_for(tmp_path, "csv", 2)).header()
    assert header["input"]["schema"]["columns"] == {"id": "int64", "code": "string"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_partitions_are_read_with_the_planned_column_types_and_folder_keys(tmp_path, fmt):
    """A partitioned job reads every partition with the one set of types of the plan (as a
    parquet job reads its unified columns), hive folder keys and compressed files included."""
    rows = {"east": [("007", 1), ("008", 2)], "west": [("A09", 3), ("007", 4.5)]}
    for region, values in rows.items():
        (tmp_path / f"region={region}").mkdir()
        if fmt == "csv":
            text = "code,v\n" + "".join(f"{c},{v}\n" for c, v in values)
        else:
            text = "".join(json.dumps({"code": c, "v": v}) + "\n" for c, v in values)
        data = text.encode()
        name = f"part.{fmt}"
        if region == "west":
            data, name = gzip.compress(data), name + ".gz"
        (tmp_path / f"region={region}" / name).write_bytes(data)
    spec = load_spec({"spec": {"input": {"uri": str(tmp_path), "type": "tabular", "format": fmt},
                               "code": {"entryScript": "s.py"}, "output": {"uri": "/tmp/o/"},
                               "partitionKeys": ["code"]}})
    header = make_plan(spec).header()
    assert header["input"]["schema"]["columns"] == {"code": "string", "v": "double", "region": "string"}
    batches = frames(spec, tmp_path)
    assert [b["code"].tolist() for b in batches] == [["007", "007"], ["008"], ["A09"]]
    assert [b["region"].tolist() for b in batches] == [["east", "west"], ["east"], ["west"]]
    assert [b["v"].tolist() for b in batches] == [[1.0, 4.5], [2.0], [3.0]]


def test_types_are_widened_across_files(tmp_path):
    (tmp_path / "a.csv").write_text("id,x,y\n0,1,\n")
    (tmp_path / "b.csv").write_text("id,x,y\n1,2.5,\n")
    (tmp_path / "c.csv").write_text("id,x,y\n2,3,q\n")
    rows = assert_same_at_every_size(tmp_path, "csv", tmp_path, sizes=[1, "1MB"])
    assert rows["x"].tolist() == [1.0, 2.5, 3.0] and rows["y"].tolist()[2] == "q"


def test_a_value_past_the_sample_that_does_not_fit_fails_naming_column_types(tmp_path, monkeypatch):
    monkeypatch.setattr(column_types, "SAMPLE", 16)
    (tmp_path / "a.csv").write_text("id,code\n" + "".join(f"{i},{i:03d}\n" for i in range(20)) + "20,A09\n")
    batches = make_plan(spec_for(tmp_path, "csv", 5)).mini_batches
    reader = Reader(make_plan(spec_for(tmp_path, "csv", 5)), str(tmp_path / "scratch"))
    assert all(reader.read(mb)[0]["code"].dtype == "int64" for mb in batches[:-1])
    with pytest.raises(SchemaMismatch, match=r"column 'code' \(planned as int64\).*'A09'.*"
                                             r"spec\.input\.options\.columnTypes, e\.g\. \{code: string\}"):
        reader.read(batches[-1])
    declared = frames(spec_for(tmp_path, "csv", 5, columnTypes={"code": "string"}), tmp_path)
    assert pd.concat(declared)["code"].tolist() == [f"{i:03d}" for i in range(20)] + ["A09"]


def test_a_jsonl_field_past_the_sample_fails_naming_column_types(tmp_path, monkeypatch):
    monkeypatch.setattr(column_types, "SAMPLE", 16)
    (tmp_path / "a.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(10)) + '{"id": 10, "new": 1}\n')
    planned = make_plan(spec_for(tmp_path, "jsonl", 5))
    reader = Reader(planned, str(tmp_path / "scratch"))
    with pytest.raises(SchemaMismatch, match="columnTypes"):
        reader.read(planned.mini_batches[-1])


def test_a_jsonl_column_of_two_kinds_across_files_is_a_planning_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"code": 7}\n')
    (tmp_path / "b.jsonl").write_text('{"code": "A09"}\n')
    with pytest.raises(PlanError, match=r"column 'code' is int64 in a\.jsonl but string in b\.jsonl"):
        make_plan(spec_for(tmp_path, "jsonl", 1))


def test_the_issue_leading_zeros_keep_their_text_in_csv_and_parquet_output(job):
    (job.data / "a.csv").write_text("id,code\n0,007\n1,008\n2,A09\n")
    job.script("def run(df):\n    return df\n")
    for fmt in ("csv", "parquet"):
        summary = run_local(str(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2,
                                          output={"format": fmt, "fileName": f"out.{fmt}"})),
                            console=Console(file=io.StringIO()), fresh=True)
        assert summary["items"] == {"succeeded": 3, "failed": 0}
    assert pd.read_csv(job.final("out.csv"), dtype=str)["code"].tolist() == ["007", "008", "A09"]
    assert pd.read_parquet(job.final("out.parquet"))["code"].tolist() == ["007", "008", "A09"]


@pytest.mark.parametrize("fmt, value, message", [
    ("csv", {"code": "text"}, r"columnTypes\.code: 'text' is not a column type; use one of string, bool"),
    ("jsonl", ["code"], r"columnTypes: expected a mapping of column name to type"),
    ("parquet", {"code": "string"}, r"columnTypes: applies to csv and jsonl input only"),
])
def test_column_types_are_checked_by_the_spec(fmt, value, message):
    with pytest.raises(SpecError, match=message):
        spec_for("/tmp/x", fmt, 1, columnTypes=value)


# -- nested values in text output ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "txt"])
def test_list_and_struct_columns_are_written_as_json_text(fmt):
    table = pa.table({"id": [1, 2], "boxes": [[1.5, 2.0], None], "meta": [{"a": 1}, {"a": None}]})
    text = encode_part(table, fmt).data.decode()
    back = pacsv.read_csv(io.BytesIO(text.encode()), read_options=pacsv.ReadOptions(
        autogenerate_column_names=fmt == "txt"), parse_options=pacsv.ParseOptions(delimiter="," if fmt == "csv" else " "))
    boxes, meta = back.column(1).to_pylist(), back.column(2).to_pylist()
    assert json.loads(boxes[0]) == [1.5, 2.0] and boxes[1] in (None, "")
    assert [json.loads(m) for m in meta] == [{"a": 1}, {"a": None}]


def test_a_run_returning_lists_in_a_column_writes_csv(job):
    (job.data / "a.csv").write_text("id\n1\n2\n3\n")
    job.script("def run(df):\n    return df.assign(boxes=[[i, i + 1] for i in df['id']])\n")
    summary = run_local(str(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2,
                                      output={"format": "csv"})), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 3, "failed": 0}
    assert [json.loads(b) for b in pd.read_csv(job.final())["boxes"]] == [[1, 2], [2, 3], [3, 4]]


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64])
def test_cuts_do_not_depend_on_where_the_scan_reads_its_blocks(tmp_path, monkeypatch, block):
    """Quote state, CRLF and blank lines carried across block boundaries (runner/rowends.py)."""
    from parallelrun.runner import rowends

    REFERENCE.to_csv(tmp_path / "a.csv", index=False, lineterminator="\r\n", quoting=1)
    expected = {size: [mb.bytes for mb in make_plan(spec_for(tmp_path, "csv", size)).mini_batches]
                for size in (1, 2, "30B")}
    monkeypatch.setattr(rowends, "BLOCK", block)
    for size, cuts in expected.items():
        assert [mb.bytes for mb in make_plan(spec_for(tmp_path, "csv", size)).mini_batches] == cuts
    assert len(expected[1]) == len(REFERENCE)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_columns_option_reads_those_columns_at_every_size(tmp_path, fmt):
    if fmt == "csv":
        JSONL_REFERENCE.to_csv(tmp_path / "a.csv", index=False)
    else:
        JSONL_REFERENCE.to_json(tmp_path / "a.jsonl", orient="records", lines=True, force_ascii=False)
    rows = assert_same_at_every_size(tmp_path, fmt, tmp_path, columns=["code", "n"])
    assert list(rows.columns) == ["code", "n"] and rows["code"].tolist() == REFERENCE["code"].tolist()


@pytest.mark.parametrize("name", ["a.csv", "a.csv.gz", "a.jsonl", "a.jsonl.gz"])
def test_a_mini_batch_that_failed_unread_counts_the_rows_it_holds(tmp_path, name):
    """Its failed items are its rows: a quoted newline or a blank line is no item of its own."""
    if ".csv" in name:
        REFERENCE.to_csv(tmp_path / name, index=False, lineterminator="\r\n")
    else:
        REFERENCE.to_json(tmp_path / name, orient="records", lines=True, force_ascii=False)
    with open(tmp_path / name, "ab") as f:
        f.write(b"\r\n\n" if name.endswith((".csv", ".jsonl")) else b"")
    fmt = "csv" if ".csv" in name else "jsonl"
    for size in ("30B", "1MB"):
        planned = make_plan(spec_for(tmp_path, fmt, size))
        reader = Reader(planned, str(tmp_path / "scratch"))
        assert [reader.count_lines(mb) for mb in planned.mini_batches] == \
            [reader.read(mb)[1] for mb in planned.mini_batches]


ARROW_COLUMNS = {
    "binary": pa.array([b"ab", None], pa.binary()),
    "large_string": pa.array(["x", None], pa.large_string()),
    "dictionary": pa.array(["a", "b"]).dictionary_encode(),
    "decimal": pa.array([decimal.Decimal("1.5"), None], pa.decimal128(5, 2)),
    "duration": pa.array([1, None], pa.duration("s")),
    "time": pa.array([datetime.time(1, 2), None]),
    "timestamp_tz": pa.array([datetime.datetime(2020, 1, 1), None], pa.timestamp("ms", tz="UTC")),
    "float16": pa.array([1.5, None], pa.float16()),
    "null": pa.array([None, None]),
    "large_list": pa.array([[1], None], pa.large_list(pa.int64())),
    "list_view": pa.array([[1], None], pa.list_view(pa.int64())),
    "fixed_size_list": pa.array([[1, 2], None], pa.list_(pa.int64(), 2)),
    "map": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
    "interval": pa.array([pa.MonthDayNano([1, 2, 3]), None], pa.month_day_nano_interval()),
}


@pytest.mark.parametrize("fmt", ["csv", "txt"])
@pytest.mark.parametrize("name", sorted(ARROW_COLUMNS))
def test_every_arrow_type_is_written_to_text_output(fmt, name):
    text = encode_part(pa.table({"id": [1, 2], name: ARROW_COLUMNS[name]}), fmt).data.decode()
    assert len([line for line in text.splitlines() if line]) == (3 if fmt == "csv" else 2)


def test_newlines_in_values_declared_gives_the_same_rows_at_every_size(tmp_path):
    REFERENCE.to_csv(tmp_path / "a.csv", index=False)
    assert_reference(assert_same_at_every_size(tmp_path, "csv", tmp_path, newlinesInValues=True))


def test_a_run_whose_later_rows_do_not_fit_fails_those_items_naming_column_types(job, monkeypatch):
    """Real workers: the mini-batch past the sample fails with the fix in errors.jsonl; the rest succeed."""
    monkeypatch.setattr(column_types, "SAMPLE", 16)
    (job.data / "a.csv").write_text("id,code\n" + "".join(f"{i},{i:03d}\n" for i in range(20)) + "20,A09\n")
    job.script("def run(df):\n    return df\n")
    summary = run_local(str(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=5, runMaxTry=1,
                                      output={"format": "csv"})), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 20, "failed": 1} and summary["plan"]["items"] == 21
    [error] = [json.loads(line) for line in next(job.output.glob("_parallelrun/*/errors.jsonl")).read_text().splitlines()]
    assert "column 'code' (planned as int64)" in error["error"] and "columnTypes" in error["error"]
    assert pd.read_csv(job.final())["code"].tolist() == list(range(20))


@pytest.mark.parametrize("sample", [20, 37, 60, 100])
def test_a_sample_that_ends_inside_a_quoted_value_gives_the_same_types(tmp_path, monkeypatch, sample):
    monkeypatch.setattr(column_types, "SAMPLE", sample)
    REFERENCE.to_csv(tmp_path / "a.csv", index=False, quoting=1)
    rows = assert_same_at_every_size(tmp_path, "csv", tmp_path, columnTypes={"code": "string"})
    assert_reference(rows)


# -- raw jsonl lines (input.options.raw) -----------------------------------------------

# Bodies whose fields and types differ from line to line: no one set of column types fits them.
VARYING = [{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}},
           {"custom_id": "b", "body": {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                                       "temperature": 0.2}},
           {"custom_id": "c", "body": {"input": "ünïcödé \u2028 line separator", "tools": None}},
           {"custom_id": "d", "body": {"prompt": 'say "hi"\nnow', "max_tokens": 5}}]
RAW_WRITERS = {
    "json.dumps": lambda rows, path: path.write_text("".join(json.dumps(r) + "\n" for r in rows)),
    "json.dumps crlf, blank lines, no last newline": lambda rows, path: path.write_bytes(
        b"\r\n \t\r\n".join(json.dumps(r, ensure_ascii=False).encode() for r in rows)),
    "pandas": lambda rows, path: pd.DataFrame(rows).to_json(path, orient="records", lines=True, force_ascii=False),
    "polars": lambda rows, path: pl.DataFrame(rows, strict=False).write_ndjson(path),
    "gzip": lambda rows, path: path.with_name(path.name + ".gz").write_bytes(
        gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())),
}


@pytest.mark.parametrize("writer", sorted(RAW_WRITERS))
def test_raw_jsonl_gives_every_line_once_as_text_at_every_mini_batch_size(tmp_path, writer):
    data = tmp_path / "data"
    data.mkdir()
    RAW_WRITERS[writer](VARYING, data / "a.jsonl")
    [written] = list(data.iterdir())
    text = gzip.decompress(written.read_bytes()) if written.suffix == ".gz" else written.read_bytes()
    expected = [line.rstrip(b"\r").decode() for line in text.split(b"\n") if line.strip(b" \t\r")]
    for size in (1, 3, "20B", "1MB"):
        planned = make_plan(spec_for(data, "jsonl", size, raw=True))
        assert planned.schema is None  # no column types inferred
        batches = frames(spec_for(data, "jsonl", size, raw=True), tmp_path)
        assert all(list(b.columns) == ["line"] for b in batches)
        lines = [line for b in batches for line in b["line"]]
        assert lines == expected, size
        assert [json.loads(line)["custom_id"] for line in lines] == ["a", "b", "c", "d"]


def test_raw_jsonl_counts_items_as_the_planner_does(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1}\n \t \n{"id": 3}\r\n\r\n  {"id": 5}  \n\n{"id": 7}\n   ')
    for rows in (1, 2, 3):
        planned = make_plan(spec_for(tmp_path, "jsonl", rows, raw=True))
        reader = Reader(planned, str(tmp_path / "scratch"))
        assert [reader.read(mb)[1] for mb in planned.mini_batches] == [mb.items for mb in planned.mini_batches]
        assert [reader.count_lines(mb) for mb in planned.mini_batches] == [mb.items for mb in planned.mini_batches]
