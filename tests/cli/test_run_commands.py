"""`parallelrun status`, `list`, `logs` and `clean` on real runs: finished, running (a real
`parallelrun run` held mid-way by its scoring script), stopped; `-o json` for each; `clean`
never removes a running run or the output file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runlines import failing_job, run_folder

from cli.test_commands import ROOT, one_line_error, parallelrun

# Scores item_0003 only once the file $RELEASE exists: the run stays running, with a few mini-batches
# committed (those before it: a group commit holds the latest until the next), until the test lets it go. Each item is printed to the worker's log.
HELD_SCRIPT = """
import os, time
from pathlib import Path

def run(mini_batch):
    for path in mini_batch:
        print("scoring", Path(path).name, flush=True)
        if Path(path).name == "item_0003.txt":
            while not os.path.exists(os.environ["RELEASE"]):
                time.sleep(0.05)
    return [Path(p).read_text().strip() for p in mini_batch]
"""

WAIT_SECONDS = 90


def _json(*args: str) -> dict:
    result = parallelrun(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _status_so_far(output: Path) -> dict | None:
    """The run's status, None before the run has a folder."""
    result = parallelrun("status", str(output), "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def _until(check, what: str):
    """check()'s first truthy value, asked until WAIT_SECONDS have passed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {WAIT_SECONDS}s: {what}")


@pytest.fixture
def held_run(job, tmp_path):
    """A `parallelrun run` in its own process, waiting in item_0003 until `release` exists."""
    job.script(HELD_SCRIPT)
    job.files(8)
    path = job.write(miniBatchSize=1, processCountPerNode=1, nodeCount=1)
    release = tmp_path / "release"
    env = dict(os.environ, RELEASE=str(release))
    process = subprocess.Popen([sys.executable, "-m", "parallelrun", "run", str(path)], cwd=ROOT.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield job, process, release
    if process.poll() is None:
        process.kill()
        process.wait()


def test_status_logs_and_clean_of_a_running_run(held_run):
    job, process, release = held_run

    def running():
        status = _status_so_far(job.output)
        return status if status and status["phase"] == "Running" and status["miniBatches"]["succeeded"] >= 2 \
            else None

    status = _until(running, "the run is running with 2 mini-batches committed")
    assert status["heldBy"]["pid"] == process.pid
    assert status["planned"] == {"miniBatches": 8, "items": 8}
    assert status["etaSeconds"] is not None and status["etaSeconds"] > 0
    assert status["completionTime"] is None
    text = parallelrun("status", str(job.output)).stdout
    assert "Running" in text and "ETA" in text and f"pid {process.pid}" in text

    page = job.root / "running.html"  # the report as far as the run has come: the commit records' attempt lines
    assert parallelrun("report", str(job.output), "-o", str(page)).returncode == 0
    html = page.read_text()
    assert 'id="phase">Running<' in html and "This run is in progress" in html
    assert int(re.search(r'id="attempts">(\d+)<', html).group(1)) >= 2 and 'id="timeline-chart"' in html

    follow = subprocess.Popen([sys.executable, "-m", "parallelrun", "logs", str(job.output), "--follow"],
                              cwd=ROOT.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cleaning = _json("clean", str(job.output), "--keep", "0")
    assert cleaning["removed"] == [] and [r["runId"] for r in cleaning["keptRunning"]] == [status["runId"]]
    assert run_folder(job).is_dir()

    release.touch()
    assert process.wait(timeout=WAIT_SECONDS) == 0, process.stderr.read()
    out, err = follow.communicate(timeout=WAIT_SECONDS)  # it ends by itself once the run has ended
    assert follow.returncode == 0, err
    scored = [line for line in out.splitlines() if "scoring" in line]
    assert scored == [f"[shard-0-worker-0] scoring item_{i:04d}.txt" for i in range(8)]

    done = _json("status", str(job.output))
    assert done["phase"] == "Succeeded" and done["miniBatches"]["succeeded"] == 8 and done["etaSeconds"] is None
    assert done["completionTime"] is not None


def test_a_run_stopped_mid_way_is_incomplete(held_run):
    job, process, _ = held_run
    _until(lambda: (_status_so_far(job.output) or {"miniBatches": {"succeeded": 0}})["miniBatches"]["succeeded"],
           "a mini-batch committed")
    os.killpg(process.pid, signal.SIGKILL) if os.getpgid(process.pid) == process.pid else process.kill()
    process.wait()
    status = _json("status", str(job.output))
    assert status["phase"] == "Incomplete" and status["heldBy"] is None and status["etaSeconds"] is None
    assert "resume" in status["reason"]
    assert [r["phase"] for r in _json("list", str(job.output))["runs"]] == ["Incomplete"]


def _age(folder: Path, seconds: float) -> None:
    """The run folder as if its plan had been written `seconds` ago."""
    plan = folder / "plan" / "plan.json"
    then = time.time() - seconds
    os.utime(plan, (then, then))


@pytest.fixture
def two_runs(job):
    """Two finished runs of one job (the second with another runMaxTry: another run id) in one output."""
    path = failing_job(job)
    assert parallelrun("run", str(path)).returncode == 0
    first = run_folder(job)
    _age(first, 7200)
    assert parallelrun("run", str(path), "--set", "runMaxTry=2").returncode == 0
    [second] = [p for p in (job.output / "_parallelrun").iterdir() if p.is_dir() and p != first]
    return job, first, second


def test_list_shows_each_run_with_its_state_size_and_age(two_runs):
    job, first, second = two_runs
    listing = _json("list", str(job.output))
    assert [r["runId"] for r in listing["runs"]] == [second.name, first.name]  # the latest first
    for run in listing["runs"]:
        assert run["phase"] == "Succeeded" and run["items"] == {"succeeded": 8, "failed": 2}
        assert run["bytes"] > 0 and run["startTime"] is not None
    text = parallelrun("list", str(job.output)).stdout.splitlines()
    assert text[0].split() == ["RUN", "STATE", "MINI-BATCHES", "SIZE", "AGE"]
    assert text[1].split()[:3] == [second.name, "Succeeded", "10/10"]
    assert text[2].split()[0] == first.name and text[2].split()[-1].startswith("2:0")  # two hours old
    assert parallelrun("status", str(job.output), "-o", "json").stdout.count(second.name)  # the latest run


def test_clean_keeps_the_latest_and_the_output_file(two_runs):
    job, first, second = two_runs
    output = job.final().read_bytes()
    dry = _json("clean", str(job.output), "--keep", "1", "--dry-run")
    assert [r["runId"] for r in dry["removed"]] == [first.name] and first.is_dir()
    cleaned = _json("clean", str(job.output), "--keep", "1")
    assert [r["runId"] for r in cleaned["removed"]] == [first.name] and cleaned["bytes"] > 0
    assert not first.exists()
    assert second.is_dir() and job.final().read_bytes() == output


def test_clean_older_than_removes_only_older_runs(two_runs):
    job, first, second = two_runs
    text = parallelrun("clean", str(job.output), "--older-than", "1h")
    [line] = text.stdout.splitlines()
    assert text.returncode == 0 and re.fullmatch(rf"removed {first.name} \(Succeeded, [0-9.]+ KiB\)", line), line
    assert not first.exists() and second.is_dir() and job.final().exists()
    assert parallelrun("clean", str(job.output), "--older-than", "1h").stdout.strip() == "nothing to remove"


@pytest.mark.parametrize(("args", "words"), [
    (["--older-than", "7 days"], "--older-than '7 days': not a duration; use a number and a unit"),
    ([], "give --keep N, --older-than D or both"),
])
def test_clean_says_what_to_give(tmp_path, args, words):
    line = one_line_error(parallelrun("clean", str(tmp_path), *args))
    assert words in line, line


def test_clean_keep_is_a_count(tmp_path):
    result = parallelrun("clean", str(tmp_path), "--keep", "-1")
    assert result.returncode == 2 and "'-1' is not a count; use a whole number of at least 0" in result.stderr


def test_logs_of_one_worker_and_as_json(job):
    job.script(HELD_SCRIPT.replace("item_0003", "none"))
    job.files(4)
    path = job.write(miniBatchSize=1, processCountPerNode=2)
    assert parallelrun("run", str(path)).returncode == 0
    lines = [json.loads(line) for line in parallelrun("logs", str(job.output), "-o", "json").stdout.splitlines()]
    scored = sorted(x["line"] for x in lines if x["line"].startswith("scoring"))
    assert scored == [f"scoring item_{i:04d}.txt" for i in range(4)]
    assert {x["worker"] for x in lines} <= {"shard-0-worker-0", "shard-0-worker-1"}
    only = parallelrun("logs", str(job.output), "--worker", "1").stdout.splitlines()
    assert only and all(line.startswith("[shard-0-worker-1] ") for line in only)
    line = one_line_error(parallelrun("logs", str(job.output), "--worker", "7"))
    assert "no log of worker 7" in line
