"""Worker failure modes with real processes: exception, short result, hang, hard crash, bad init."""

import io
import json

import pytest
from rich.console import Console

from parallelrun.runner.local import LocalRunError, run_local

# A scoring script whose behaviour per file is named in the file: "ok", "raise",
# "short", "hang", "exit", "segv", "flaky" (raises on the first attempt only).
SCRIPT = """
import ctypes, os, sys, time
from pathlib import Path

def init():
    global calls
    calls = Path(os.environ["CALLS_LOG"])

def run(mini_batch):
    out = []
    for path in mini_batch:
        action = Path(path).read_text().strip()
        with calls.open("a") as f:
            f.write(Path(path).name + "\\n")
        if action == "raise":
            raise ValueError(f"bad item {Path(path).name}")
        if action == "flaky" and not Path(path + ".seen").exists():
            Path(path + ".seen").touch()
            raise RuntimeError("first attempt fails")
        if action == "hang":
            time.sleep(600)
        if action == "exit":
            os._exit(7)
        if action == "segv":
            ctypes.string_at(0)
        if action != "short":
            out.append(Path(path).name)
    return out
"""


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


@pytest.fixture
def scripted(job, tmp_path, monkeypatch):
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("CALLS_LOG", str(calls))
    job.script(SCRIPT)

    def make(actions: list[str], **spec):
        for i, action in enumerate(actions):
            (job.data / f"item_{i:03d}.txt").write_text(action)
        return job.write(**spec)

    def calls_of(name):
        return calls.read_text().split().count(name) if calls.exists() else 0

    make.calls = calls_of
    make.job = job
    return make


def job_output(scripted) -> list[str]:
    return scripted.job.final().read_text().split()


def errors_of(summary):
    with open(summary["errors"]) as f:
        return [json.loads(line) for line in f]


def test_exception_fails_the_mini_batch_after_run_max_try_attempts(scripted, job):
    path = scripted(["ok", "raise", "ok", "ok"], miniBatchSize=1, runMaxTry=3)
    summary = quiet_run(path)
    assert summary["items"] == {"succeeded": 3, "failed": 1}
    assert summary["miniBatches"]["failed"] == 1
    assert scripted.calls("item_001.txt") == 3
    [error] = errors_of(summary)
    assert error["item"].endswith("item_001.txt") and error["attempts"] == 3
    assert "ValueError: bad item item_001.txt" in error["error"] and "Traceback" in error["traceback"]
    assert job.final().read_text().split() == ["item_000.txt", "item_002.txt", "item_003.txt"]


def test_a_flaky_item_succeeds_on_retry(scripted):
    summary = quiet_run(scripted(["ok", "flaky", "ok"]))
    assert summary["items"] == {"succeeded": 3, "failed": 0}
    assert scripted.calls("item_001.txt") == 2


def test_short_result_counts_failed_items_not_a_failed_mini_batch(scripted):
    summary = quiet_run(scripted(["ok", "short", "ok", "short", "ok"], miniBatchSize=5))
    assert summary["items"] == {"succeeded": 3, "failed": 2}
    assert summary["miniBatches"] == {"succeeded": 1, "failed": 0, "total": 1}
    [error] = errors_of(summary)
    assert error["items"] == 2 and "returned 3 results for 5 items" in error["error"]
    assert len(error["source"]["files"]) == 5


def test_hang_is_killed_after_the_timeout_and_the_worker_replaced(scripted):
    summary = quiet_run(scripted(["ok", "hang", "ok", "ok", "ok"], runInvocationTimeout=2, runMaxTry=2))
    assert summary["items"] == {"succeeded": 4, "failed": 1}
    [error] = errors_of(summary)
    assert "runInvocationTimeout (2 s)" in error["error"]
    assert scripted.calls("item_001.txt") == 2
    assert summary["seconds"] < 60


@pytest.mark.parametrize("action,message", [("exit", "exited with code 7"), ("segv", "killed by SIGSEGV")])
def test_hard_crash_replaces_the_worker_and_the_shard_goes_on(scripted, action, message):
    summary = quiet_run(scripted(["ok", action, "ok", "ok", "ok", "ok"], runMaxTry=2))
    assert summary["items"] == {"succeeded": 5, "failed": 1}
    [error] = errors_of(summary)
    assert message in error["error"]
    assert job_output(scripted) == ["item_000.txt", "item_002.txt", "item_003.txt", "item_004.txt", "item_005.txt"]
    # A mini-batch the dead worker had run but not yet written (its group of parts died with
    # it) runs again, once: never committed twice, never lost.
    assert all(1 <= scripted.calls(f"item_{i:03d}.txt") <= 2 for i in (0, 2, 3, 4, 5))


def test_init_failure_is_a_configuration_error(job):
    job.files(3)
    job.script("def init():\n    raise ImportError('no module named torch')\n\ndef run(b):\n    return b\n")
    with pytest.raises(LocalRunError, match="the scoring script cannot load: ImportError: no module named torch") as e:
        quiet_run(job.write())
    assert e.value.exit_code == 2


def test_missing_entry_script(job):
    job.files(1)
    with pytest.raises(LocalRunError, match="spec.code.entryScript: score.py not found") as e:
        quiet_run(job.write())
    assert e.value.exit_code == 2


def test_run_returning_none_is_a_failed_attempt(job):
    job.files(2)
    job.script("def run(b):\n    return None\n")
    summary = quiet_run(job.write(runMaxTry=1))
    assert summary["items"]["failed"] == 2
    assert "return a list or a pandas DataFrame" in errors_of(summary)[0]["error"]


@pytest.mark.parametrize("returned", ["None", "{'rows': b}", "len(b)", "'done'", "(p for p in b)", "set(b)"])
def test_a_result_of_the_wrong_type_is_not_retried(job, tmp_path, returned):
    """Neither a list nor a DataFrame: every attempt would return the same, so one attempt fails
    the mini-batch, whatever runMaxTry; its items are failed items with the reason."""
    calls = tmp_path / "calls.log"
    job.files(4)
    job.script(f"def run(b):\n    with open({str(calls)!r}, 'a') as f:\n        f.write('call\\n')\n"
               f"    return {returned}\n")
    summary = quiet_run(job.write(runMaxTry=3, miniBatchSize=2, processCountPerNode=1))
    assert calls.read_text().count("call") == 2  # one attempt per mini-batch
    assert summary["items"] == {"succeeded": 0, "failed": 4}
    assert summary["miniBatches"]["failed"] == 2
    errors = errors_of(summary)
    assert len(errors) == 4 and {e["attempts"] for e in errors} == {1}
    assert all("return a list or a pandas DataFrame" in e["error"] for e in errors)



@pytest.mark.parametrize("size", [1, 3])
def test_errors_jsonl_names_the_files_of_a_mini_batch_that_returned_nothing(scripted, size):
    """run() returned no result for a files mini-batch: each of its files is a failed item, named
    on a line of its own; a partly short one cannot say which failed and lists its files."""
    actions = ["short", "short", "short", "ok", "short", "ok"]
    summary = quiet_run(scripted(actions, miniBatchSize=size))
    errors = errors_of(summary)
    assert sum(e["items"] for e in errors) == summary["items"]["failed"] == 4
    named = sorted(e["item"] for e in errors if e["item"] is not None)
    if size == 1:
        assert named == [str(scripted.job.data / f"item_{i:03d}.txt") for i in (0, 1, 2, 4)]
    else:  # [short short short] returned nothing; [ok short ok] returned 2 of 3
        assert named == [str(scripted.job.data / f"item_{i:03d}.txt") for i in (0, 1, 2)]
        [partial] = [e for e in errors if e["item"] is None]
        assert partial["items"] == 1 and len(partial["source"]["files"]) == 3
    assert all(e["error"].startswith("run() returned ") for e in errors)
