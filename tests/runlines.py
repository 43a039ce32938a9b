"""Runs for the tests of `parallelrun report`, `status`, `list`, `logs` and `clean`: a small job
whose failures are known, and attempt lines written as a run's report folder holds them."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from jobfolder import JobFolder

from parallelrun.runner.layout import Layout
from parallelrun.runner.records import AttemptLine, ResourceSample
from parallelrun.runner.reportfiles import attempts_csv, resources_csv

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

# Items whose name holds "bad" fail; the error names the item and carries markup a page must escape.
FAILING_SCRIPT = """
import time
from pathlib import Path

def run(mini_batch):
    time.sleep({pause})
    for path in mini_batch:
        if "bad" in Path(path).name:
            raise ValueError("cannot score <script>alert('x')</script> " + Path(path).name)
    return [Path(p).read_text().strip() for p in mini_batch]
"""


def failing_job(job: JobFolder, good: int = 8, bad: int = 2, pause: float = 0.0, **spec) -> Path:
    """Its mini-batches take `pause` seconds each."""
    job.script(FAILING_SCRIPT.replace("{pause}", str(pause)))
    job.files(good)
    job.files(bad, prefix="bad")
    return job.write(miniBatchSize=1, errorThreshold=-1, runMaxTry=1, **spec)


def run_folder(job: JobFolder) -> Path:
    [folder] = [p for p in (job.output / "_parallelrun").iterdir() if p.is_dir() and p.name != "cache"]
    return folder


def iso(offset: float) -> str:
    return (T0 + datetime.timedelta(seconds=offset)).isoformat()


def attempt(mini_batch: int, worker: int, start: float, seconds: float, items: int = 1, error: str = "",
            shard: int = 0) -> AttemptLine:
    """An attempt of `items` items by pod `shard`, failed where it has an `error`, starting `start` seconds after T0."""
    return AttemptLine(mini_batch, 0, shard, f"pod-{shard}", worker, 1, iso(start), seconds, seconds, 0.0, items,
                       0 if error else items, items if error else 0, "failed" if error else "succeeded", error)


def write_report_lines(folder: Path, attempts: list[AttemptLine], samples: list[ResourceSample] | None = None) -> None:
    """The merged report files of the run folder `folder`."""
    layout = Layout(str(folder.parent.parent), folder.name)
    Path(layout.report_dir).mkdir(parents=True, exist_ok=True)
    Path(layout.report_mini_batches).write_text(attempts_csv(attempts, header=True))
    if samples is not None:
        Path(layout.report_resources).write_text(resources_csv(samples, header=True))


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())
