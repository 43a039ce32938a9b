"""AML's accounting and thresholds: succeeded + failed == items in the plan, always."""

import io
import json
import random

import pytest
from reportfolder import check_report, report_of
from rich.console import Console

from parallelrun.runner.accounting import Counts, threshold_exceeded
from parallelrun.runner.local import LocalRunError, run_local

# Each file names what run() does with it; mixes every way an item can fail.
SCRIPT = """
import os
from pathlib import Path

def run(mini_batch):
    out = []
    for path in mini_batch:
        action = Path(path).read_text().strip()
        if action == "raise":
            raise ValueError(path)
        if action == "exit":
            os._exit(3)
        if action != "drop":
            out.append(action)
    return out
"""


def quiet_run(path):
    return run_local(str(path), console=Console(file=io.StringIO()))


@pytest.mark.parametrize("seed", [1, 2])
def test_succeeded_plus_failed_is_the_plan_whatever_fails(job, seed):
    rng = random.Random(seed)
    actions = rng.choices(["ok", "ok", "ok", "drop", "raise", "exit"], k=60)
    for i, action in enumerate(actions):
        (job.data / f"f{i:03d}").write_text(action)
    job.script(SCRIPT)
    summary = quiet_run(job.write(miniBatchSize=rng.choice([1, 3, 7]), nodeCount=2, runMaxTry=1))
    items = summary["items"]
    assert items["succeeded"] + items["failed"] == 60 == summary["plan"]["items"]
    mbs = summary["miniBatches"]
    assert mbs["succeeded"] + mbs["failed"] == summary["plan"]["miniBatches"]
    lines = job.final().read_text().split()
    assert len(lines) == items["succeeded"] and set(lines) == {"ok"}
    failed_listed = 0
    with open(summary["errors"]) as f:
        for record in map(json.loads, f):
            failed_listed += record["items"]
    assert failed_listed == items["failed"]
    lines, plan, _ = report_of(summary)
    check_report(lines, summary, plan)
    assert all(line.attempt == 1 for line in lines)  # runMaxTry 1


def counts(mb_failed=0, items_failed=0):
    return Counts(mini_batches_failed=mb_failed, items_failed=items_failed)


@pytest.mark.parametrize("c,args,exceeded", [
    (counts(items_failed=10), (100, 10, -1, 100), None),
    (counts(items_failed=11), (100, 10, -1, 100), "11 failed items exceed errorThreshold 10"),
    (counts(items_failed=10**6), (100, -1, -1, 100), None),
    (counts(mb_failed=3), (100, -1, 2, 100), "3 failed mini-batches exceed miniBatchErrorThreshold 2"),
    (counts(mb_failed=6), (100, -1, -1, 5), "6 of 100 mini-batches failed (6.0%), over allowedFailedPercent 5"),
    (counts(mb_failed=5), (100, -1, -1, 5), None),
    (counts(mb_failed=100), (100, -1, -1, -1), None),
])
def test_thresholds(c, args, exceeded):
    assert threshold_exceeded(c, *args) == exceeded


def test_a_threshold_stops_the_job_early(job):
    for i in range(200):
        (job.data / f"f{i:03d}").write_text("raise" if i % 2 else "ok")
    job.script(SCRIPT)
    with pytest.raises(LocalRunError, match="failed items exceed errorThreshold 3") as e:
        quiet_run(job.write(errorThreshold=3, runMaxTry=1))
    assert e.value.exit_code == 1
    summary = json.loads(next(job.output.glob("_parallelrun/*/summary.json")).read_text())
    assert summary["status"] == "Failed" and summary["output"] is None
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] < 200
    assert not job.final().exists()


def test_allowed_failed_percent_holds_as_a_ceiling(job):
    for i in range(20):
        (job.data / f"f{i:03d}").write_text("raise" if i == 0 else "ok")
    job.script(SCRIPT)
    summary = quiet_run(job.write(allowedFailedPercent=5, runMaxTry=1))  # 1 of 20 = 5%: allowed
    assert summary["status"] == "Succeeded" and summary["miniBatches"]["failed"] == 1
    with pytest.raises(LocalRunError, match="over allowedFailedPercent 4"):
        quiet_run(job.write(allowedFailedPercent=4, runMaxTry=1))
