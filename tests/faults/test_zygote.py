"""Workers are forked from a zygote (runner/zygote.py): what it imported is theirs, what is
each worker's own stays its own, and a zygote that dies is replaced with nothing lost."""

import io
import json
import os
from pathlib import Path

from jobfolder import killing_script
from rich.console import Console

from parallelrun.runner.local import run_local

from .conftest import alive

# Records, as the entry script is imported, what the worker has loaded and who its parent is;
# init() waits for the other worker (one could otherwise score everything alone), then draws
# a random number.
RECORDING = """
import json, os, sys, time
from pathlib import Path

PIDS = Path(os.environ["PIDS_DIR"])
SEEN = {"pandas": "pandas" in sys.modules, "pid": os.getpid(), "parent": os.getppid(),
        "pgid": os.getpgid(0), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "parent_threads": len(os.listdir(f"/proc/{os.getppid()}/task"))}
(PIDS / f"seen-{os.getpid()}").write_text(json.dumps(SEEN))

def init():
    deadline = time.monotonic() + 20
    while len(list(PIDS.glob("seen-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    import numpy
    (PIDS / f"random-{os.getpid()}").write_text(str(numpy.random.randint(1 << 62)))

def run(mini_batch):
    return [str(x) for x in (mini_batch["x"] if hasattr(mini_batch, "columns") else mini_batch)]
"""


def _seen(pids, name: str = "seen") -> list:
    return [json.loads(p.read_text()) for p in pids.root.glob(f"{name}-*")]


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def test_a_files_job_forks_workers_without_pandas_each_with_its_gpus(job, pids):
    job.files(4)
    job.script(RECORDING)
    summary = quiet_run(job.write(miniBatchSize=1, environment={"gpu": {"count": 2}}))
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    seen = _seen(pids)
    assert len(seen) == 2
    assert not any(s["pandas"] for s in seen)  # nothing a files job does not use
    assert sorted(s["cuda"] for s in seen) == ["0", "1"]  # set before the entry script was imported
    [zygote] = {s["parent"] for s in seen}  # one parent, not this process: the zygote
    assert zygote != os.getpid() and not alive(zygote)
    assert {s["parent_threads"] for s in seen} == {1}  # it forks with no other thread running
    assert len({s["pgid"] for s in seen}) == 1  # the pool's group


def test_a_tabular_job_forks_workers_with_pandas_loaded_and_their_own_random_numbers(job, pids):
    (job.data / "x.csv").write_text("x\n" + "".join(f"{i}\n" for i in range(8)))
    job.script(RECORDING)
    summary = quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2))
    assert summary["items"] == {"succeeded": 8, "failed": 0}
    seen = _seen(pids)
    assert len(seen) == 2 and all(s["pandas"] for s in seen)  # imported once, by the zygote
    first, second = _seen(pids, "random")
    assert first != second  # numpy's generator reseeded in each worker


def test_a_killed_zygote_is_replaced_and_every_item_accounted(job, tmp_path, monkeypatch):
    """Its workers die with it (PR_SET_PDEATHSIG); the pool starts another zygote, whose
    workers run what was lost, the attempts that were running counted as failed ones."""
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("CALLS_LOG", str(calls))
    names = job.files(10)
    job.script(killing_script("item_0003.txt", "os.getppid()"))  # its parent: the zygote
    summary = quiet_run(job.write(miniBatchSize=1, runMaxTry=3))
    assert summary["items"] == {"succeeded": 10, "failed": 0}
    assert sorted(job.final().read_text().split()) == sorted(str(i) for i in range(10))
    assert Path(f"{calls}.killed").exists() and set(calls.read_text().split()) == set(names)
