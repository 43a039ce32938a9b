"""`global_row_index_lower_bound` of AML's mini_batch_context: the first row's index in the whole
input, across files, for every tabular input whose rows the plan knows; None where only reading
tells (csv/jsonl cut by size), never a per-file index that passes for a global one."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import run_local

SCRIPT = """
import json, os

def run(mini_batch, mini_batch_context):
    ids = mini_batch["id"].tolist() if hasattr(mini_batch, "columns") else [0] * len(mini_batch)
    with open(os.environ["SEEN"], "a") as f:
        f.write(json.dumps({"index": mini_batch_context.minibatch_index,
                            "low": mini_batch_context.global_row_index_lower_bound, "first": ids[0]}) + "\\n")
    return ["x"] * len(mini_batch)
"""

SIZES = (70, 1, 45)  # rows of the three files: slices cross file ends


def write_inputs(folder, fmt: str) -> None:
    start = 0
    for i, rows in enumerate(SIZES):
        table = pa.table({"id": pa.array(range(start, start + rows), pa.int64())})
        if fmt == "parquet":
            pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=16)
        elif fmt == "csv":
            pacsv.write_csv(table, folder / f"part-{i}.csv")
        else:
            (folder / f"part-{i}.jsonl").write_text("".join(json.dumps({"id": v}) + "\n"
                                                            for v in range(start, start + rows)))
        start += rows


def seen(job, monkeypatch, **spec) -> list[dict]:
    log = job.root / "seen.jsonl"
    monkeypatch.setenv("SEEN", str(log))
    job.script(SCRIPT)
    run_local(str(job.write(processCountPerNode=1, **spec)), console=Console(file=io.StringIO()))
    return sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda m: m["index"])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_tabular_by_rows_gives_the_first_rows_index_in_the_whole_input(job, monkeypatch, fmt):
    write_inputs(job.data, fmt)
    calls = seen(job, monkeypatch, input={"type": "tabular", "format": fmt}, miniBatchSize=20, nodeCount=2)
    assert len(calls) > len(SIZES)
    assert all(call["low"] == call["first"] for call in calls), calls  # each row's id is its global index


def test_csv_cut_by_size_says_none_rather_than_a_wrong_index(job, monkeypatch):
    write_inputs(job.data, "csv")
    calls = seen(job, monkeypatch, input={"type": "tabular", "format": "csv"}, miniBatchSize="64B")
    assert calls[0]["low"] == 0 and calls[0]["first"] == 0  # nothing before the first
    assert len(calls) > 3 and all(call["low"] is None for call in calls[1:])


def test_files_input_gets_zero(job, monkeypatch):
    job.files(5)
    calls = seen(job, monkeypatch, miniBatchSize=2)
    assert [call["low"] for call in calls] == [0, 0, 0]
