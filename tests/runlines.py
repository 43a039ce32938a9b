"""Runs made for the tests of `parallelrun report`, `status`, `list`, `logs` and `clean`: real local
runs of a small job, and the attempt and resource lines a run's report folder holds."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path

from jobfolder import JobFolder

ATTEMPT_COLUMNS = ["miniBatch", "chunk", "shard", "pod", "worker", "attempt", "start", "seconds", "runSeconds",
                   "readSeconds", "items", "succeeded", "failed", "status", "error"]
RESOURCE_COLUMNS = ["time", "pod", "worker", "pid", "cpu", "rss", "gpu", "gpuUtilization", "gpuMemory"]
T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

# Items whose name holds "bad" fail; the error names the item and carries markup a page must escape.
FAILING_SCRIPT = """
from pathlib import Path

def run(mini_batch):
    for path in mini_batch:
        if "bad" in Path(path).name:
            raise ValueError("cannot score <script>alert('x')</script> " + Path(path).name)
    return [Path(p).read_text().strip() for p in mini_batch]
"""


def failing_job(job: JobFolder, good: int = 8, bad: int = 2, **spec) -> Path:
    job.script(FAILING_SCRIPT)
    job.files(good)
    job.files(bad, prefix="bad")
    return job.write(miniBatchSize=1, errorThreshold=-1, runMaxTry=1, **spec)


def run_folder(job: JobFolder) -> Path:
    [folder] = [p for p in (job.output / "_parallelrun").iterdir() if p.is_dir() and p.name != "cache"]
    return folder


def iso(offset: float) -> str:
    return (T0 + datetime.timedelta(seconds=offset)).isoformat()


def csv_text(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def attempt(mini_batch: int, worker: int, start: float, seconds: float, items: int = 1, error: str = "",
            pod: str = "pod-0", attempt_number: int = 1) -> dict:
    return {"miniBatch": mini_batch, "chunk": 0, "shard": 0, "pod": pod, "worker": worker,
            "attempt": attempt_number, "start": iso(start), "seconds": seconds, "runSeconds": seconds,
            "readSeconds": 0, "items": items, "succeeded": 0 if error else items, "failed": items if error else 0,
            "status": "failed" if error else "succeeded", "error": error}


def write_report_lines(folder: Path, attempts: list[dict], resources: list[dict] | None = None) -> None:
    report = folder / "report"
    report.mkdir(exist_ok=True)
    (report / "minibatches.csv").write_text(csv_text(ATTEMPT_COLUMNS, attempts))
    if resources is not None:
        (report / "resources.csv").write_text(csv_text(RESOURCE_COLUMNS, resources))


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())
