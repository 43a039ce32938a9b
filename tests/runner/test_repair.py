"""Repair runs: --retry-failed (spec.retryFailed) reruns only the failed mini-batches of a
finished run with a fixed script, and splices their results into the same ordered output."""

import io
import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.repair import RepairError, prepare_repair, repair_target
from parallelrun.runner.spec import load_spec_file
from parallelrun.runner.storage import filesystem

# Fails on the items named in BROKEN (a bug), logs every item it meets.
SCRIPT = """
import os
from pathlib import Path

BROKEN = {broken}

def run(mini_batch):
    out = []
    for path in mini_batch:
        name = Path(path).name
        with open(os.environ["CALLS_LOG"], "a") as f:
            f.write(name + "\\n")
        if Path(path).read_text().strip() in BROKEN:
            raise ValueError(f"bug on {{name}}")
        out.append(f"{{name}} {{Path(path).read_text().strip().upper()}}")
    return out
"""


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def make(job, kinds):
    for i, kind in enumerate(kinds):
        (job.data / f"item_{i:03d}.txt").write_text(kind)


def errors(summary) -> list[str]:
    return sorted(json.loads(line)["item"].rsplit("/", 1)[-1] for line in open(summary["errors"]))


def test_only_the_failed_mini_batches_run_again_and_are_spliced_in_order(job, calls):
    kinds = ["ok", "ok", "bad", "ok", "ok", "ok", "ok", "worse", "ok", "ok"]
    make(job, kinds)
    job.script(SCRIPT.format(broken={"bad", "worse"}))
    path = job.write(miniBatchSize=2, runMaxTry=1)
    first = quiet_run(path)
    assert first["items"] == {"succeeded": 6, "failed": 4}
    before = job.final().read_bytes()
    calls.write_text("")
    job.script(SCRIPT.format(broken={"worse"}))  # the bug fixed for "bad", not for "worse"
    repaired = quiet_run(path, retry_failed=True)
    assert repaired["runId"] == first["runId"]  # the same run, a new version of its output
    assert sorted(calls.read_text().split()) == [f"item_{i:03d}.txt" for i in (2, 3, 6, 7)]  # only those
    assert repaired["items"] == {"succeeded": 8, "failed": 2}
    assert errors(repaired) == ["item_006.txt", "item_007.txt"]  # only what still fails
    assert job.final().read_text().splitlines() == [
        f"item_{i:03d}.txt {k.upper()}" for i, k in enumerate(kinds) if i not in (6, 7)]
    assert (job.output / "parallel_run_step.txt.previous").read_bytes() == before
    calls.write_text("")
    job.script(SCRIPT.format(broken=set()))
    again = quiet_run(path, retry_failed=True)
    assert sorted(calls.read_text().split()) == ["item_006.txt", "item_007.txt"]
    assert again["items"] == {"succeeded": 10, "failed": 0} and errors(again) == []
    assert job.final().read_text().splitlines() == [f"item_{i:03d}.txt {k.upper()}" for i, k in enumerate(kinds)]


TABLE = """
import pandas as pd

def run(df):
    if {broken} and (df["id"] % 7 == 3).any():
        raise ValueError("bug")
    return df.assign(score=df["id"] * 2)
"""


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_tabular_output_formats_are_spliced(job, fmt):
    pq.write_table(pa.table({"id": list(range(100))}), job.data / "t.parquet", row_group_size=10)
    job.script(TABLE.format(broken=True))
    path = job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=10, runMaxTry=1,
                     output={"format": fmt, "fileName": f"out.{fmt}"})
    assert quiet_run(path)["miniBatches"]["failed"] > 0
    job.script(TABLE.format(broken=False))
    summary = quiet_run(path, retry_failed=True)
    assert summary["items"] == {"succeeded": 100, "failed": 0}
    read = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt]
    table = read(job.final(f"out.{fmt}"))
    assert table["id"].tolist() == list(range(100)) and table["score"].tolist() == [2 * i for i in range(100)]


def test_nothing_to_repair_and_nothing_finished(job, calls):
    make(job, ["ok", "ok"])
    job.script(SCRIPT.format(broken=set()))
    path = job.write(miniBatchSize=1)
    with pytest.raises(RepairError, match="no finished run of test under .* to repair; run the job first"):
        quiet_run(path, retry_failed=True)
    first = quiet_run(path)
    calls.write_text("")
    again = quiet_run(path, retry_failed=True)
    assert (again["runId"], again["items"]) == (first["runId"], first["items"]) and calls.read_text() == ""


def test_a_repair_cut_short_goes_on(job, calls):
    make(job, ["ok", "bad", "ok", "bad"])
    job.script(SCRIPT.format(broken={"bad"}))
    path = job.write(miniBatchSize=1, runMaxTry=1)
    quiet_run(path)
    job.script(SCRIPT.format(broken=set()))
    spec = load_spec_file(str(path))
    fs, out = filesystem(spec.output.uri)
    run_id, summary = repair_target(fs, out, spec)
    assert prepare_repair(spec, fs, Layout(out, run_id), summary)  # then the process died
    calls.write_text("")
    summary = quiet_run(path, retry_failed=True)
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    assert sorted(calls.read_text().split()) == ["item_001.txt", "item_003.txt"]


def test_the_command_and_the_field(job, calls, tmp_path):
    make(job, ["ok", "bad"])
    job.script(SCRIPT.format(broken={"bad"}))
    path = job.write(miniBatchSize=1, runMaxTry=1)
    command = [sys.executable, "-m", "parallelrun.cli", "run", str(path)]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    job.script(SCRIPT.format(broken=set()))
    proc = subprocess.run([*command, "--retry-failed"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Repairing run" in proc.stderr
    assert job.final().read_text().splitlines() == ["item_000.txt OK", "item_001.txt BAD"]
    field = job.write(miniBatchSize=1, runMaxTry=1, retryFailed=True)
    assert quiet_run(field)["items"] == {"succeeded": 2, "failed": 0}  # nothing left to repair
