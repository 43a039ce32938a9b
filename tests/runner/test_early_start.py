"""Local mode starts the workers (entry script, init()) while it plans, with real processes."""

import io
import os
import time

import pytest
from rich.console import Console

from parallelrun.runner import local
from parallelrun.runner.local import run_local
from parallelrun.runner.planning import PlanError

# init() and shutdown() log the worker's pid; run() echoes each file's name.
SCRIPT = """
import os
from pathlib import Path

def _log(name):
    with open(Path(os.environ["LIFE_LOG"]).with_suffix("." + name), "a") as f:
        f.write(f"{os.getpid()}\\n")

def init():
    _log("init")

def shutdown():
    _log("shutdown")

def run(mini_batch):
    return [Path(p).name for p in mini_batch]
"""


@pytest.fixture
def life(job, tmp_path, monkeypatch):
    log = tmp_path / "life"
    monkeypatch.setenv("LIFE_LOG", str(log))
    job.script(SCRIPT)
    return lambda name: [int(pid) for pid in log.with_suffix(f".{name}").read_text().split()] \
        if log.with_suffix(f".{name}").exists() else []


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


@pytest.fixture
def plan_after_init(life, monkeypatch):
    """Planning waits until both workers' init() has run: it can only end if they started first."""
    plan = local.ensure_plan

    def slow_plan(*args, **kw):
        deadline = time.monotonic() + 30
        while len(life("init")) < 2:
            assert time.monotonic() < deadline, "init() did not run while planning"
            time.sleep(0.02)
        time.sleep(0.3)  # their Ready messages follow init() at once
        return plan(*args, **kw)

    monkeypatch.setattr(local, "ensure_plan", slow_plan)


def test_init_runs_while_the_input_is_planned(job, life, plan_after_init):
    names = job.files(6)
    summary = quiet_run(job.write(miniBatchSize=1))
    assert summary["status"] == "Succeeded"
    assert sorted(job.final().read_text().split()) == names
    assert len(set(life("init"))) == 2 and sorted(life("shutdown")) == sorted(life("init"))


def test_workers_beyond_the_mini_batches_stop_with_shutdown(job, life, plan_after_init):
    """One mini-batch, two workers started early: the spare one runs shutdown() and exits once planned."""
    job.files(1)
    summary = quiet_run(job.write(miniBatchSize=10))
    assert summary["miniBatches"]["succeeded"] == 1
    assert job.final().read_text().split() == ["item_0000.txt"]
    assert len(life("init")) == 2 and sorted(life("shutdown")) == sorted(life("init"))


def test_a_failed_plan_leaves_no_worker_running(job, life, plan_after_init):
    job.files(2)
    with pytest.raises(PlanError):
        quiet_run(job.write(input={"uri": "missing/"}))
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in life("init")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(life("init")) == 2 and not any(_alive(pid) for pid in life("init"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
