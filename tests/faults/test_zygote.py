"""Workers are forked from a zygote (runner/zygote.py): what it imported is theirs, what is
each worker's own stays its own, and a zygote that dies is replaced with nothing lost."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from jobfolder import killing_script
from rich.console import Console

from parallelrun.runner import zygote
from parallelrun.runner.local import run_local

from .conftest import alive, wait_until

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


def test_the_zygote_started_first_thing_forks_the_first_pools_workers(job, pids):
    """`parallelrun run` starts a zygote before it reads the job (zygote.start_early): it
    imports meanwhile, and the first pool boots it instead of starting another."""
    job.files(4)
    job.script(RECORDING)
    zygote.start_early()
    early = zygote._early[1].pid
    summary = quiet_run(job.write(miniBatchSize=1))
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    assert {s["parent"] for s in _seen(pids)} == {early} and zygote._early is None
    assert not alive(early)


def test_an_early_zygote_that_died_is_replaced(job, pids):
    job.files(4)
    job.script(RECORDING)
    zygote.start_early()
    early = zygote._early[1]
    early.kill()
    early.wait()
    summary = quiet_run(job.write(miniBatchSize=1))
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    [parent] = {s["parent"] for s in _seen(pids)}
    assert parent != early.pid and zygote._early is None


def test_an_early_zygote_ignores_ctrl_c_and_ends_quietly_with_its_process(tmp_path):
    """No pool came (the job file was invalid, a pipeline ran no scoring step): the zygote
    ends when the process that started it does, without a word; Ctrl-C in the terminal
    reaches it too, and leaves it waiting."""
    code = ("import os, signal, time\n"
            "from parallelrun.runner import zygote\n"
            "zygote.start_early()\n"
            "pid = zygote._early[1].pid\n"
            "time.sleep(0.5)\n"
            "os.kill(pid, signal.SIGINT)\n"
            "time.sleep(0.3)\n"
            "print(pid, zygote._early[1].poll(), flush=True)\n"
            "os._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid, status = done.stdout.split()
    assert status == "None"  # alive after Ctrl-C
    assert done.returncode == 0 and done.stderr == ""
    wait_until(lambda: not alive(int(pid)), 10, "the early zygote ended")
