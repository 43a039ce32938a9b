"""No process outlives a run, however it ends; init() has a deadline; sys.exit() in run() is a
failed attempt. Real processes throughout: the CLI and the in-pod runner are started as
commands, killed with real signals, and what is left is read from /proc."""

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from parallelrun.runner.local import LocalRunError, run_local

from .conftest import alive, wait_until

# Items 4 and up hang when HANG is set: run() starts a child process of its own (one that
# ignores SIGINT and SIGTERM, as a server might) and sleeps. Without HANG all succeed.
HANGING = """
import os, subprocess, time
from pathlib import Path

PIDS = Path(os.environ["PIDS_DIR"])

def init():
    (PIDS / f"init-{os.getpid()}").touch()

def run(mini_batch):
    for path in mini_batch:
        if os.environ.get("HANG") and int(Path(path).read_text()) >= 4:
            child = subprocess.Popen(["sh", "-c", "trap '' INT TERM; exec sleep 1000"])
            (PIDS / f"hang-{os.getpid()}-{child.pid}-{os.getpgid(0)}").touch()
            time.sleep(1000)
    return [Path(p).name for p in mini_batch]
"""

CLI = ["-m", "parallelrun.cli", "run"]


def hanging_job(job, **spec) -> str:
    job.files(8)
    job.script(HANGING)
    return str(job.write(miniBatchSize=1, processCountPerNode=2, **spec))


def wait_for_hangs(pids, command, count: int = 2) -> None:
    """Until `count` workers hang in run(), each with its child started (exec'd into sleep)."""
    def hanging():
        assert command.process.poll() is None, command.stderr
        hangs = pids.hangs()
        return len(hangs) >= count and all(_comm(child) == "sleep" for _, child, _ in hangs)
    wait_until(hanging, 30, "workers hanging in run()")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def assert_stopped_in_order(stderr: str) -> None:
    """The pool was stopped before the CLI exited: the hint is the last word, no worker died
    of a signal on the way out (multiprocessing SIGTERMs the children left at exit)."""
    assert "run the same command again to resume" in stderr.strip().splitlines()[-1]
    assert "killed by" not in stderr and "Traceback" not in stderr, stderr


def assert_nothing_left(pids, timeout: float = 10) -> None:
    wait_until(lambda: not pids.left(), timeout, f"every worker and child process gone (left: {pids.left()})")


def assert_resumes_and_completes(job, commands, path: str) -> None:
    again = commands([*CLI, path], job.root)
    assert again.wait(60) == 0, again.stderr
    assert "Resuming run" in again.stderr
    summary = job.summary()
    planned = len(list(job.data.iterdir()))
    assert summary["items"]["succeeded"] + summary["items"]["failed"] == planned == 8
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] == 8


def test_sigkill_of_the_cli_leaves_no_worker_nor_child(job, pids, commands):
    path = hanging_job(job)
    first = commands([*CLI, path], job.root, env={"HANG": "1"})
    wait_for_hangs(pids, first)
    os.kill(first.process.pid, signal.SIGKILL)  # the main process alone, as the OOM killer does
    assert first.wait(10) == -signal.SIGKILL
    assert_nothing_left(pids)
    assert_resumes_and_completes(job, commands, path)


def test_sigterm_stops_the_cli_as_ctrl_c_does_with_exit_code_143(job, pids, commands):
    path = hanging_job(job)
    first = commands([*CLI, path], job.root, env={"HANG": "1"})
    wait_for_hangs(pids, first)
    started = time.monotonic()
    os.kill(first.process.pid, signal.SIGTERM)
    assert first.wait(15) == 143, first.stderr
    assert time.monotonic() - started < 10
    assert_stopped_in_order(first.stderr)
    assert_nothing_left(pids, timeout=5)
    assert_resumes_and_completes(job, commands, path)


def test_ctrl_c_reaches_the_cli_alone_which_stops_every_process(job, pids, commands):
    path = hanging_job(job)
    first = commands([*CLI, path], job.root, env={"HANG": "1"})
    wait_for_hangs(pids, first)
    os.killpg(first.process.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    assert first.wait(15) == 130, first.stderr
    assert_stopped_in_order(first.stderr)
    assert_nothing_left(pids, timeout=5)
    assert_resumes_and_completes(job, commands, path)


def test_sigterm_of_the_pod_runner_exits_143_and_leaves_nothing(job, pids, commands, tmp_path):
    path = hanging_job(job)
    env = {"HANG": "1", "PARALLELRUN_TERMINATION_LOG": str(tmp_path / "termination-log")}
    runner = ["-m", "parallelrun.runner"]
    plan = commands([*runner, "plan", "--spec", path, "--run-id", "r1"], job.root, env)
    assert plan.wait(30) == 0, plan.stderr
    score = commands([*runner, "score", "--spec", path, "--run-id", "r1", "--shard", "0"], job.root, env)
    wait_for_hangs(pids, score)
    os.kill(score.process.pid, signal.SIGTERM)  # the kubelet stopping the pod
    assert score.wait(15) == 143, score.stderr
    assert_nothing_left(pids, timeout=5)


def test_init_that_never_returns_fails_after_init_timeout(job, pids, commands):
    job.files(3)
    job.script("""
        import os, time
        from pathlib import Path

        def init():
            (Path(os.environ["PIDS_DIR"]) / f"init-{os.getpid()}").touch()
            time.sleep(1000)

        def run(mini_batch):
            return mini_batch
    """)
    started = time.monotonic()
    command = commands([*CLI, str(job.write(initTimeout=3))], job.root)
    assert command.wait(30) == 2, command.stderr
    assert time.monotonic() - started < 15
    last = command.stderr.strip().splitlines()[-1]
    assert "init() did not finish within initTimeout (3 s); raise spec.initTimeout or make init() faster " \
           "(worker logs: " in last
    assert pids.inits() and not [pid for pid in pids.inits() if alive(pid)]
    # the stacks of the hung init() are in the worker's log
    logs = "".join(p.read_text() for p in job.output.glob("_parallelrun/*/logs/*.log"))
    assert "in init" in logs


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def test_a_worker_killed_mid_run_is_replaced_and_every_item_accounted(job, pids):
    job.files(10)
    job.script("""
        import os, signal
        from pathlib import Path

        def init():
            (Path(os.environ["PIDS_DIR"]) / f"init-{os.getpid()}").touch()

        def run(mini_batch):
            for path in mini_batch:
                marker = Path(path + ".killed")
                if path.endswith("item_0003.txt") and not marker.exists():
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL)
            return [Path(p).name for p in mini_batch]
    """)
    summary = quiet_run(job.write(miniBatchSize=1, runMaxTry=2))
    assert summary["items"] == {"succeeded": 10, "failed": 0}  # item 3 too, on its second attempt
    assert summary["miniBatches"]["succeeded"] == 10
    assert (job.data / "item_0003.txt.killed").exists()
    # two workers, and the replacement of the killed one if it started before the other finished
    assert 2 <= len(pids.inits()) <= 3
    assert not [pid for pid in pids.inits() if alive(pid)]


@pytest.mark.parametrize("raised,message", [
    ("SystemExit(3)", "SystemExit: 3 raised by run()"),
    ("KeyboardInterrupt()", "KeyboardInterrupt raised by run()"),
])
def test_system_exit_or_keyboard_interrupt_in_run_is_a_failed_attempt(job, pids, raised, message):
    job.files(4)
    job.script(f"""
        import os
        from pathlib import Path

        def init():
            (Path(os.environ["PIDS_DIR"]) / f"init-{{os.getpid()}}").touch()

        def run(mini_batch):
            if any(p.endswith("item_0001.txt") for p in mini_batch):
                raise {raised}
            return [Path(p).name for p in mini_batch]
    """)
    summary = quiet_run(job.write(miniBatchSize=1, runMaxTry=2, processCountPerNode=1))
    assert summary["status"] == "Succeeded"
    assert summary["items"] == {"succeeded": 3, "failed": 1}
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] == 4
    with open(summary["errors"]) as f:
        [error] = [json.loads(line) for line in f]
    assert error["item"].endswith("item_0001.txt") and error["attempts"] == 2
    assert message in error["error"] and "Traceback" in error["traceback"]
    assert len(pids.inits()) == 1  # the worker went on: never replaced


def test_system_exit_in_init_is_user_code_that_cannot_load(job):
    job.files(2)
    job.script("import sys\n\ndef init():\n    sys.exit(3)\n\ndef run(b):\n    return b\n")
    with pytest.raises(LocalRunError, match=r"cannot load: SystemExit: 3 raised by init\(\)") as e:
        quiet_run(job.write())
    assert e.value.exit_code == 2


def test_no_more_workers_than_mini_batches(job, pids):
    job.files(2)
    job.script("""
        import os
        from pathlib import Path

        def init():
            (Path(os.environ["PIDS_DIR"]) / f"init-{os.getpid()}").touch()

        def run(mini_batch):
            return [Path(p).name for p in mini_batch]
    """)
    summary = quiet_run(job.write(miniBatchSize=1, processCountPerNode=8))
    assert summary["items"] == {"succeeded": 2, "failed": 0}
    assert 1 <= len(pids.inits()) <= 2


def test_the_pool_kills_what_the_users_code_started_when_it_closes(job, pids):
    """A child that run() left behind (a server started in init(), a forgotten Popen)
    does not outlive the run, even one that ignores SIGTERM."""
    job.files(2)
    job.script("""
        import os, subprocess
        from pathlib import Path

        def run(mini_batch):
            child = subprocess.Popen(["sh", "-c", "trap '' INT TERM; exec sleep 1000"])
            (Path(os.environ["PIDS_DIR"]) / f"child-{child.pid}").touch()
            return [Path(p).name for p in mini_batch]
    """)
    summary = quiet_run(job.write(miniBatchSize=1))
    assert summary["items"] == {"succeeded": 2, "failed": 0}
    children = pids.children()
    assert len(children) == 2
    wait_until(lambda: not [pid for pid in children if alive(pid)], 5, "the children of run() gone")


if sys.platform != "linux":  # /proc, process groups and PR_SET_PDEATHSIG
    pytestmark = pytest.mark.skip("Linux only")
