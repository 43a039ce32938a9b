"""Side outputs: files run() writes to PARALLELRUN_OUTPUT_DIR / AZUREML_BI_OUTPUT_PATH are
published under output.uri with the mini-batch's commit, exactly once: dropped with a
failed or killed attempt, never doubled by a resume."""

import io
import os
import subprocess
import sys

from jobfolder import THE_SHARD
from rich.console import Console

from parallelrun.runner.local import run_local


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


# One side output per item, named after the input and the attempt (a doubled attempt would
# show as a second file); the folder read once in init(), as AML scripts do.
SIDE = """
import json, os, signal, uuid
from pathlib import Path

def init():
    global out
    out = Path(os.environ["AZUREML_BI_OUTPUT_PATH"])
    assert os.environ["PARALLELRUN_OUTPUT_DIR"] == str(out)

def run(mini_batch):
    attempt = uuid.uuid4().hex[:8]
    rows = []
    for path in mini_batch:
        name = Path(path).name
        action = Path(path).read_text().strip()
        (out / "masks" / name).mkdir(parents=True, exist_ok=True)
        (out / "masks" / name / f"{attempt}.json").write_text(json.dumps({"item": name}))
        marker = Path(path + ".seen")
        if action == "flaky" and not marker.exists():
            marker.touch()
            raise RuntimeError("first attempt fails after writing its side output")
        if action == "kill" and not marker.exists():
            marker.touch()
            os.kill(VICTIM, signal.SIGKILL)
        if action == "raise":
            raise ValueError("always fails")
        rows.append(name)
    return rows
"""


def side_files(job) -> dict[str, list[str]]:
    masks = job.output / "masks"
    return {item: sorted(os.listdir(masks / item)) for item in sorted(os.listdir(masks))}


def items(job, actions):
    for i, action in enumerate(actions):
        (job.data / f"img_{i:03d}.png").write_text(action)


def test_side_outputs_are_published_once_with_summary_only(job):
    items(job, ["ok"] * 12)
    job.script(SIDE.replace("VICTIM", "0"))
    summary = quiet_run(job.write(miniBatchSize=3, output={"action": "summaryOnly"}))
    assert summary["status"] == "Succeeded" and summary["items"] == {"succeeded": 12, "failed": 0}
    files = side_files(job)
    assert list(files) == [f"img_{i:03d}.png" for i in range(12)]
    assert all(len(names) == 1 for names in files.values())
    assert not list(job.output.glob("_parallelrun/*/side"))  # nothing kept once published


def test_a_failed_attempt_leaves_no_side_output(job):
    items(job, ["ok", "flaky", "ok", "raise", "ok"])
    job.script(SIDE.replace("VICTIM", "0"))
    summary = quiet_run(job.write(miniBatchSize=1, runMaxTry=2))
    assert summary["items"] == {"succeeded": 4, "failed": 1}
    files = side_files(job)
    assert "img_003.png" not in files  # its mini-batch failed: its side outputs are dropped
    assert {k: len(v) for k, v in files.items()} == {f"img_{i:03d}.png": 1 for i in (0, 1, 2, 4)}


def runner(*args, env=None):
    return subprocess.run([sys.executable, "-m", "parallelrun.runner", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_a_killed_pod_and_a_resume_leave_each_side_output_once(job, tmp_path, monkeypatch):
    monkeypatch.setenv("PARALLELRUN_TERMINATION_LOG", str(tmp_path / "termination-log"))
    actions = ["ok"] * 20
    actions[13] = "kill"
    items(job, actions)
    job.script(SIDE.replace("VICTIM", THE_SHARD))
    path = str(job.write(miniBatchSize=2, processCountPerNode=2))
    pod = ("--spec", path, "--run-id", "r1")
    assert runner("plan", *pod).returncode == 0
    first = runner("score", *pod, env={"JOB_COMPLETION_INDEX": "0"})
    assert first.returncode == -9  # the pod died mid-shard, side outputs of attempts in flight kept or not
    second = runner("score", *pod, env={"JOB_COMPLETION_INDEX": "0"})
    assert second.returncode == 0, second.stderr
    assert runner("merge", *pod).returncode == 0
    files = side_files(job)
    assert {k: len(v) for k, v in files.items()} == {f"img_{i:03d}.png": 1 for i in range(20)}
    assert job.final().read_text().splitlines() == [f"img_{i:03d}.png" for i in range(20)]
    assert not (job.output / "_parallelrun/r1/side").exists()


def test_a_commit_whose_publishing_was_cut_short_is_published_by_the_merge(job, tmp_path, monkeypatch):
    """Kept files of a committed mini-batch still in side/ (a kill between commit and publish)
    are published by the merge; those of a mini-batch never committed are dropped."""
    monkeypatch.setenv("PARALLELRUN_TERMINATION_LOG", str(tmp_path / "termination-log"))
    items(job, ["ok"] * 4)
    job.script(SIDE.replace("VICTIM", "0"))
    path = str(job.write(miniBatchSize=2, processCountPerNode=1))
    pod = ("--spec", path, "--run-id", "r2")
    assert runner("plan", *pod).returncode == 0
    assert runner("score", *pod, env={"JOB_COMPLETION_INDEX": "0"}).returncode == 0
    side = job.output / "_parallelrun/r2/side"
    published = job.output / "masks" / "img_001.png"
    [name] = os.listdir(published)
    (side / "1" / "masks" / "img_001.png").mkdir(parents=True)  # mini-batch 1's files, as before its publish
    (published / name).rename(side / "1" / "masks" / "img_001.png" / name)
    (side / "9" / "masks").mkdir(parents=True)  # an attempt killed before any commit
    (side / "9" / "masks" / "stray.json").write_text("{}")
    assert runner("merge", *pod).returncode == 0
    assert {k: len(v) for k, v in side_files(job).items()} == {f"img_{i:03d}.png": 1 for i in range(4)}
    assert not side.exists()
