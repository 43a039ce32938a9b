"""Local mode against far more shards or workers than the work or the machine has: never more
shards than mini-batches, never more workers than work, a bounded number running at once
(memory does not grow with nodeCount), a warning, and the output of a one-shard run."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner import local
from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.planning import read_plan
from parallelrun.runner.storage import filesystem

# Each worker logs "pid start end" (monotonic, one clock for every process) when it shuts down.
SCRIPT = """
import os
import time
from pathlib import Path

import pandas as pd

START = None

def init():
    global START
    START = time.monotonic()

def shutdown():
    with open(os.environ["LIFE_LOG"], "a") as f:
        f.write(f"{os.getpid()} {START} {time.monotonic()}\\n")

def run(mini_batch):
    time.sleep(0.02)
    if isinstance(mini_batch, pd.DataFrame):
        return [f"row {v}" for v in mini_batch["v"]]
    return [Path(p).name for p in mini_batch]
"""


def _files(job):
    job.files(16)
    return {"miniBatchSize": 1}, 16


def _csv(job):
    (job.data / "a.csv").write_text("v\n" + "".join(f"{i}\n" for i in range(30)))
    (job.data / "b.csv").write_text("v\n" + "".join(f"{i}\n" for i in range(30, 42)))
    return {"input": {"type": "tabular", "format": "csv"}, "miniBatchSize": 5}, 6 + 3


def _parquet(job):
    pq.write_table(pa.table({"v": list(range(40))}), job.data / "a.parquet", row_group_size=10)
    return {"input": {"type": "tabular", "format": "parquet"}, "miniBatchSize": 10}, 4


INPUTS = {"files": _files, "csv": _csv, "parquet": _parquet}


def run(job, console=None, **spec):
    return run_local(str(job.write(**spec)), console=console or Console(file=io.StringIO()))


def lives(log):
    return [tuple(map(float, line.split()[1:])) for line in log.read_text().splitlines()] if log.exists() else []


def most_at_once(spans):
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize(("kind", "node_count", "processes"), [
    ("files", 10000, 2), ("csv", 10000, 2), ("parquet", 10000, 2), ("files", 1, 500), ("csv", 300, 300)])
def test_far_more_shards_or_workers_than_work_run_what_the_work_needs(job, tmp_path, monkeypatch, kind,
                                                                       node_count, processes):
    monkeypatch.setattr(local, "available_cpus", lambda: 1)  # room for 4 worker processes at once
    log = tmp_path / "life"
    monkeypatch.setenv("LIFE_LOG", str(log))
    job.script(SCRIPT)
    extra, mini_batches = INPUTS[kind](job)
    expected = run(job, nodeCount=1, processCountPerNode=1, **extra)
    one_shard = job.final().read_bytes()
    log.unlink()
    out = io.StringIO()
    summary = run(job, Console(file=out, width=400), nodeCount=node_count, processCountPerNode=processes,
                  **extra)
    assert summary["status"] == "Succeeded"
    assert summary["miniBatches"] == {"succeeded": mini_batches, "failed": 0, "total": mini_batches}
    assert summary["items"] == expected["items"] and job.final().read_bytes() == one_shard
    fs, out_path = filesystem(str(job.output))
    plan = read_plan(fs, Layout(out_path, summary["runId"]))
    assert len(plan.shards) == min(node_count, mini_batches) and all(s.count for s in plan.shards)
    spans = lives(log)
    started_early = min(node_count, max(1, 4 // processes)) * processes if processes <= 4 else 0
    assert len(spans) <= max(mini_batches, started_early)  # no more workers than work
    assert most_at_once(spans) <= max(4, processes if processes <= mini_batches else mini_batches)
    text = " ".join(out.getvalue().split())
    assert f"warning: nodeCount {node_count:,} × processCountPerNode {processes:,} asks for " \
           f"{node_count * processes:,} worker processes on 1 CPU(s) and {mini_batches} mini-batches: " in text


def test_a_request_within_the_machine_gives_no_warning(job, monkeypatch):
    monkeypatch.setattr(local, "available_cpus", lambda: 2)
    job.script("def run(mini_batch):\n    return mini_batch\n")
    job.files(3)
    out = io.StringIO()
    assert run(job, Console(file=out, width=400), nodeCount=4, processCountPerNode=2,
               miniBatchSize=1)["status"] == "Succeeded"
    assert "warning" not in out.getvalue() and "over 3 node(s) × 2 process(es)" in out.getvalue()
