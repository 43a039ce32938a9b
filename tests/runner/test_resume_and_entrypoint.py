"""The pod contract: `python -m parallelrun.runner`, exit codes, termination message, resume."""

import json
import os
import subprocess
import sys

import pytest
from jobfolder import THE_SHARD, killing_script

# Kills the shard process (the pod's main process) the first time it meets `item_0030`, some
# seconds in: after a group of commits was written (commits.GROUP_SECONDS), before the last.
CRASHING = killing_script("item_0030.txt", THE_SHARD, sleep=0.15)


def committed_ids(root) -> list[int]:
    """The mini-batches committed under a run's folder (its commit files' records)."""
    return [json.loads(line)["id"] for path in root.glob("commits/*/*.jsonl") for line in path.read_text().splitlines()]


def runner(*args, env=None, check=None):
    proc = subprocess.run([sys.executable, "-m", "parallelrun.runner", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


@pytest.fixture
def pod_env(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("PARALLELRUN_TERMINATION_LOG", str(log))
    monkeypatch.setenv("CALLS_LOG", str(calls))
    return log, calls


def test_a_crashed_shard_resumes_and_the_merge_has_no_gap_nor_duplicate(job, pod_env):
    log, calls = pod_env
    job.files(40)
    job.script(CRASHING)
    path = str(job.write(miniBatchSize=2, processCountPerNode=1))
    runner("plan", "--spec", path, "--run-id", "r1", check=0)
    first = runner("score", "--spec", path, "--run-id", "r1", env={"JOB_COMPLETION_INDEX": "0"})
    assert first.returncode == -9  # the pod died mid-shard
    committed = committed_ids(job.output / "_parallelrun/r1")
    assert 0 < len(committed) < 20 and len(set(committed)) == len(committed)
    progress = job.output / "_parallelrun/r1/progress/00000.json"  # published at once, then every 10 s
    published = json.loads(progress.read_text())["miniBatches"]  # with the first group committed
    assert 1 <= published["succeeded"] <= len(committed) and published["failed"] == 0
    runner("score", "--spec", path, "--run-id", "r1", env={"JOB_COMPLETION_INDEX": "0"}, check=0)
    message = json.loads(log.read_text())
    assert message == {"miniBatches": {"succeeded": 20, "failed": 0}, "items": {"succeeded": 40, "failed": 0}}
    last = json.loads(progress.read_text())  # and the last count when the shard is done, by chunk too
    assert {k: v for k, v in last.items() if k != "chunks"} == message
    assert sum(counts[0] for counts in last["chunks"].values()) == 20
    runner("merge", "--spec", path, "--run-id", "r1", check=0)
    assert job.final().read_text().split() == [str(i) for i in range(40)]
    seen = calls.read_text().split()
    # mini-batches committed before the crash were not run again
    assert all(seen.count(f"item_{i:04d}.txt") == 1 for mb in committed for i in (2 * mb, 2 * mb + 1))
    assert json.loads(log.read_text())["status"] == "Succeeded"


def test_threshold_exit_code_3_and_its_message(job, pod_env):
    log, _ = pod_env
    job.files(30)
    job.script("def run(b):\n    raise ValueError('no')\n")
    path = str(job.write(errorThreshold=2, runMaxTry=1))
    runner("plan", "--spec", path, "--run-id", "r", check=0)
    runner("score", "--spec", path, "--run-id", "r", "--shard", "0", check=3)
    message = json.loads(log.read_text())
    assert message["items"]["failed"] == 3 and "exceed errorThreshold 2" in message["reason"]
    assert len(log.read_text().encode()) < 4096


def test_configuration_errors_exit_2(job, pod_env):
    log, _ = pod_env
    job.files(2)
    job.script("import not_a_module\ndef run(b):\n    return b\n")
    path = str(job.write())
    runner("plan", "--spec", path, "--run-id", "r", check=0)
    runner("score", "--spec", path, "--run-id", "r", check=2)  # no JOB_COMPLETION_INDEX
    assert "JOB_COMPLETION_INDEX" in json.loads(log.read_text())["reason"]
    runner("score", "--spec", path, "--run-id", "r", "--shard", "0", check=2)
    assert "user code cannot load: ModuleNotFoundError" in json.loads(log.read_text())["reason"]
    runner("score", "--spec", path, "--run-id", "unplanned", "--shard", "0", check=2)
    (job.root / "bad.yaml").write_text("spec: {input: {uri: x, type: video}}")
    runner("plan", "--spec", str(job.root / "bad.yaml"), "--run-id", "r", check=2)
    assert "spec.input.type: 'video' is not one of tabular, files" in json.loads(log.read_text())["reason"]


def test_termination_message_stays_under_4kb():
    from parallelrun.runner.__main__ import termination_message

    assert len(termination_message(None, "x" * 10000).encode()) <= 4000


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_cli_run_resumes_after_the_local_process_is_killed(job, pod_env):
    _, _calls = pod_env
    job.files(40)
    job.script(CRASHING)
    path = str(job.write(miniBatchSize=2, processCountPerNode=1))
    first = cli("run", path)
    assert first.returncode == -9
    second = cli("run", path)
    assert second.returncode == 0, second.stderr
    assert "Resuming run" in second.stderr and "Succeeded" in second.stderr
    assert job.final().read_text().split() == [str(i) for i in range(40)]


def test_cli_exit_status_and_one_line_reason(job):
    job.files(5)
    job.script("def run(b):\n    raise ValueError('no')\n")
    path = str(job.write(errorThreshold=0, runMaxTry=1))
    failed = cli("run", path)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("failed: stopped: 1 failed items exceed errorThreshold 0")
    ok = cli("run", path, "--set", "errorThreshold=-1")
    assert ok.returncode == 0, ok.stderr
    bad = cli("run", path, "--set", "miniBatchSize=1MB")
    assert bad.returncode == 2 and "spec.miniBatchSize: '1MB' is a size" in bad.stderr


def test_cli_validate(job):
    job.script("def run(mini_batch):\n    return mini_batch\n")
    good = job.write()
    (job.root / "bad.yaml").write_text("kind: BatchInferenceJob\nspec: {input: {uri: d, type: files}, nodeCount: -1}\n")
    result = cli("validate", str(good), str(job.root / "bad.yaml"))
    assert result.returncode == 2
    assert "valid BatchInferenceJob 'test'" in result.stdout
    for expected in ("spec.nodeCount: -1 is below the minimum 1", "spec.output: required", "spec.code: required"):
        assert expected in result.stderr


def test_cli_validate_checks_the_files_it_can_reach(job):
    path = job.write(input={"uri": "no-such-folder/"}, code={"entryScript": "missing.py"})
    result = cli("validate", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(line.strip().startswith("spec.input.uri: ") and "no-such-folder/ does not exist" in line
               for line in lines), lines
    assert any(line.strip().startswith("spec.code.entryScript: ") and "missing.py does not exist" in line
               for line in lines), lines
    offline = cli("validate", "--no-check", str(path))
    assert offline.returncode == 0, offline.stderr


def test_cli_version_and_exit_codes_are_documented():
    assert cli("--version").stdout.startswith("parallelrun ")
    assert "143" in cli("run", "--help").stdout


def test_termination_messages_read_back_as_written():
    from parallelrun.runner.accounting import Counts
    from parallelrun.runner.records import TerminationMessage

    scoring = TerminationMessage(Counts(3, 1, 30, 10), "threshold")
    assert TerminationMessage.from_text(scoring.to_text()) == scoring
    merge = TerminationMessage(Counts(4, 0, 40, 0), None, "Succeeded", {"uri": "az://out/x.csv", "bytes": 9})
    assert json.loads(merge.to_text())["reason"] is None and TerminationMessage.from_text(merge.to_text()) == merge
    assert TerminationMessage.from_text('{"reason": "no plan"}') == TerminationMessage(reason="no plan")
    assert TerminationMessage.from_text("Traceback (most recent call last): ...") is None  # a log tail
    assert TerminationMessage.from_text("[1, 2]") is None
