"""run() returns Results(rows, errors=[ItemError(item, error)]) to fail some items of its
mini-batch with their own errors while the others succeed: every input kind and output
format counts them the same way (succeeded + failed == planned), lists each in errors.jsonl
with its error, and keeps the rows run() gave (an error line for a failed item, if it gives one)."""

import io
import json

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import run_local
from parallelrun.runner.outputs import ItemError, ResultError, Results, ResultTypeError, split_results


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def errors_of(summary) -> list[dict]:
    return [json.loads(line) for line in open(summary["errors"])]


# Files: a file whose text starts with "bad" fails with its own error; `rows` says whether the
# failed file still gives a row (an error line) or none.
FILES = """
from pathlib import Path
from parallelrun.runner.outputs import ItemError, Results

ERROR_ROWS = {error_rows}

def run(mini_batch):
    rows, errors = [], []
    for path in mini_batch:
        text = Path(path).read_text().strip()
        if text.startswith("bad"):
            errors.append(ItemError(Path(path).name, f"cannot score {{text}}"))
            if ERROR_ROWS:
                rows.append(f"{{Path(path).name}} error")
        else:
            rows.append(f"{{Path(path).name}} ok")
    return Results(rows, errors)
"""


@pytest.mark.parametrize("error_rows", [True, False])
@pytest.mark.parametrize("size", [1, 3, 10])
def test_files_fail_alone_with_their_errors(job, error_rows, size):
    texts = ["a", "bad 1", "b", "c", "bad 4", "bad 5", "d", "e", "f", "bad 9"]
    for i, text in enumerate(texts):
        (job.data / f"f{i}.txt").write_text(text)
    job.script(FILES.format(error_rows=error_rows))
    summary = quiet_run(job.write(miniBatchSize=size))
    assert summary["items"] == {"succeeded": 6, "failed": 4}
    assert summary["miniBatches"]["failed"] == 0  # items failed, not mini-batches
    lines = job.final().read_text().splitlines()
    expected = [f"f{i}.txt {'error' if t.startswith('bad') else 'ok'}" for i, t in enumerate(texts)]
    assert lines == (expected if error_rows else [line for line in expected if line.endswith("ok")])
    errors = errors_of(summary)
    assert [(e["item"], e["error"], e["items"]) for e in errors] == [
        (f"f{i}.txt", f"cannot score {t}", 1) for i, t in enumerate(texts) if t.startswith("bad")]  # plan order


# Rows: a row whose text is "bad" fails; the frame keeps a row for it with the error.
ROWS = """
import pandas as pd
from parallelrun.runner.outputs import ItemError, Results

def run(mini_batch):
    bad = mini_batch["text"].astype(str).str.startswith("bad")
    errors = [ItemError(str(i), "bad text") for i in mini_batch["id"][bad]]
    out = pd.DataFrame({"id": mini_batch["id"], "ok": ~bad})
    return Results(out, errors)
"""

TEXTS = [f"bad {i}" if i % 7 == 3 else f"t{i}" for i in range(50)]
BAD = [i for i, t in enumerate(TEXTS) if t.startswith("bad")]


def write_input(job, writer):
    frame = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS})
    if writer == "pyarrow":
        pq.write_table(pa.Table.from_pandas(frame), job.data / "in.parquet", row_group_size=8)
        return "parquet"
    if writer == "pandas-csv":
        frame.to_csv(job.data / "in.csv", index=False)
        return "csv"
    if writer == "duckdb-jsonl":
        with duckdb.connect() as db:  # its replacement scan reads the local `frame`
            db.execute(f"copy (select * from frame) to '{job.data / 'in.jsonl'}' (format json)")
        return "jsonl"
    pl.from_pandas(frame).write_csv(job.data / "in.csv")
    return "csv"


@pytest.mark.parametrize("writer", ["pyarrow", "pandas-csv", "duckdb-jsonl", "polars-csv"])
@pytest.mark.parametrize("out", ["csv", "parquet", "jsonl"])
def test_rows_fail_alone_whatever_the_input_and_output(job, writer, out):
    fmt = write_input(job, writer)
    job.script(ROWS)
    summary = quiet_run(job.write(input={"type": "tabular", "format": fmt}, miniBatchSize=9,
                                  output={"format": out, "fileName": f"out.{out}"}))
    assert summary["items"] == {"succeeded": len(TEXTS) - len(BAD), "failed": len(BAD)}
    assert [int(e["item"]) for e in errors_of(summary)] == BAD
    path = job.final(f"out.{out}")
    result = pd.read_parquet(path) if out == "parquet" else pd.read_csv(path) if out == "csv" \
        else pd.read_json(path, lines=True)
    assert result["id"].tolist() == list(range(len(TEXTS)))  # plan order, the failed rows kept as run() gave them
    assert [i for i, ok in enumerate(result["ok"]) if not ok] == BAD


MANY = """
from parallelrun.runner.outputs import ItemError, Results

def run(mini_batch):
    rows, errors = [], []
    for path in mini_batch:
        n = int(open(path).read())
        if n < 0:
            errors.append(ItemError(path.rsplit("/", 1)[-1], "negative"))
        rows += [f"{path.rsplit('/', 1)[-1]} {k}" for k in range(max(n, 0))]
    return Results(rows, errors)
"""


def test_many_results_per_item_count_named_failures(job):
    counts = [2, -1, 0, 3, -1, 1]
    for i, n in enumerate(counts):
        (job.data / f"f{i}.txt").write_text(str(n))
    job.script(MANY)
    summary = quiet_run(job.write(miniBatchSize=4, output={"resultsPerItem": "many"}))
    assert summary["items"] == {"succeeded": 4, "failed": 2}
    assert [e["item"] for e in errors_of(summary)] == ["f1.txt", "f4.txt"]


# Fewer rows than the items not named: the rest fail with the general error, counted once.
SHORT = """
from parallelrun.runner.outputs import ItemError, Results

def run(mini_batch):
    return Results(["only one"], [ItemError("second", "named")])
"""


def test_named_and_unnamed_failures_add_up(job):
    for i in range(4):
        (job.data / f"f{i}.txt").write_text("x")
    job.script(SHORT)
    summary = quiet_run(job.write(miniBatchSize=4))
    assert summary["items"] == {"succeeded": 1, "failed": 3}
    errors = errors_of(summary)
    assert [(e["item"], e["items"]) for e in errors] == [("second", 1), (None, 2)]
    assert "run() returned 1 results for 4 items" in errors[1]["error"]


def test_item_errors_count_against_the_error_threshold(job):
    texts = ["bad"] * 3 + ["ok"] * 3
    for i, text in enumerate(texts):
        (job.data / f"f{i}.txt").write_text(text)
    job.script(FILES.format(error_rows=False))
    with pytest.raises(Exception, match="errorThreshold"):
        quiet_run(job.write(miniBatchSize=1, errorThreshold=2, processCountPerNode=1))


def test_split_results_checks_what_run_returned():
    assert split_results(["a"], 1) == (["a"], ())
    rows, errors = split_results(Results(["a"], [ItemError(3, ValueError("x"))]), 2)
    assert rows == ["a"] and errors == (ItemError("3", "x"),)
    with pytest.raises(ResultError, match="named 2 failed items of a mini-batch of 1"):
        split_results(Results([], [ItemError("a", "e"), ItemError("b", "e")]), 1)
    with pytest.raises(ResultTypeError, match="ItemError"):
        split_results(Results([], [("a", "e")]), 1)
