"""`parallelrun status`, `list`, `report`, `logs` and `clean` of a run whose output is on Azure Blob
(Azurite): the state from the blobs, a running run known by its fresh lease."""

from __future__ import annotations

import json
import subprocess
import sys

from parallelrun.runner.lock import RunLock


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_the_run_commands_on_blob_storage(az_job, tmp_path):
    for i in range(6):
        az_job.upload(f"in/item_{i}.txt", f"{i}\n")
    az_job.upload("in/bad_0.txt", "x\n")
    az_job.script("""
        def run(mini_batch):
            if any("bad" in p for p in mini_batch):
                raise ValueError("cannot score this one")
            return [open(p).read().strip() for p in mini_batch]
        """)
    path = az_job.write(miniBatchSize=1, errorThreshold=-1, runMaxTry=1)
    assert _cli("run", str(path), cwd=tmp_path).returncode == 0
    out = az_job.uri("out/")

    result = _cli("status", out, "-o", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["phase"] == "Succeeded" and status["miniBatches"] == {"succeeded": 6, "failed": 1}
    assert status["startTime"] is not None and status["completionTime"] is not None
    run_id = status["runId"]

    listing = json.loads(_cli("list", out, "-o", "json", cwd=tmp_path).stdout)
    [run] = listing["runs"]
    assert run["runId"] == run_id and run["bytes"] > 0

    page = tmp_path / "page.html"
    assert _cli("report", out, "-o", str(page), cwd=tmp_path).returncode == 0
    assert 'id="items-failed">1<' in page.read_text() and "cannot score this one" in page.read_text()

    logs = _cli("logs", out, cwd=tmp_path)  # kept in a temporary folder named after the run
    assert logs.returncode == 0, logs.stderr

    # A run on blob storage runs while its lease is fresh: clean keeps it, status says who runs it.
    with RunLock(az_job.fs, az_job.blob("out"), run_id):
        held = json.loads(_cli("status", out, "-o", "json", cwd=tmp_path).stdout)
        assert held["phase"] == "Running" and held["heldBy"]["token"]
        kept = json.loads(_cli("clean", out, "--keep", "0", "-o", "json", cwd=tmp_path).stdout)
        assert kept["removed"] == [] and [r["runId"] for r in kept["keptRunning"]] == [run_id]

    removed = json.loads(_cli("clean", out, "--keep", "0", "-o", "json", cwd=tmp_path).stdout)
    assert [r["runId"] for r in removed["removed"]] == [run_id]
    assert not az_job.exists(f"out/_parallelrun/{run_id}/summary.json")
    assert az_job.exists("out/parallel_run_step.txt")  # the output file stays
    assert json.loads(_cli("list", out, "-o", "json", cwd=tmp_path).stdout)["runs"] == []
