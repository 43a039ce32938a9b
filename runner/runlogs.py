"""The worker logs of a local run (`parallelrun logs`): shard-S-worker-K.log in the run folder's
logs/ on a local disk; in a temporary folder named after the run (`parallelrun-logs-<run-id>-*`)
when the output is on object storage. Following them ends when the run ends.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator

from .layout import Layout
from .storage import is_local

FOLLOW_POLL_SECONDS = 0.2
_NAME = re.compile(r"^shard-(\d+)-worker-(\d+)\.log$")


def temporary_log_dir(run_id: str) -> str:
    """Where a local run on object storage keeps its worker logs."""
    return tempfile.mkdtemp(prefix=f"parallelrun-logs-{run_id}-")


def log_dir(fs, layout: Layout) -> str | None:
    """The run's log folder on this machine, None where it has none (a run on a cluster: its pods' logs)."""
    if is_local(fs):
        folder = os.path.join(layout.root, "logs")
        return folder if os.path.isdir(folder) else None
    found = glob.glob(os.path.join(tempfile.gettempdir(), f"parallelrun-logs-{glob.escape(layout.run_id)}-*"))
    return max(found, key=os.path.getmtime) if found else None


def log_files(folder: str, worker: int | None = None) -> list[str]:
    """The worker logs in `folder` (worker K of every shard where `worker` is given), in shard, worker order."""
    found = []
    for name in os.listdir(folder):
        match = _NAME.match(name)
        if match and (worker is None or int(match.group(2)) == worker):
            found.append((int(match.group(1)), int(match.group(2)), os.path.join(folder, name)))
    return [path for _, _, path in sorted(found)]


def label(path: str) -> str:
    return os.path.basename(path).removesuffix(".log")


def read_lines(files: list[str], follow: bool = False, running: Callable[[], bool] = lambda: False,
               folder: str | None = None, worker: int | None = None) -> Iterator[tuple[str, str]]:
    """(label, line) of every line in `files`; following, new lines (and new files in `folder`) as
    they come until `running()` is False, then the last lines written."""
    offsets: dict[str, int] = {}
    while True:
        if folder is not None and follow:
            files = log_files(folder, worker)
        still = running() if follow else False
        for path in files:
            with open(path, "rb") as f:
                f.seek(offsets.get(path, 0))
                data = f.read()
            complete = data[:data.rfind(b"\n") + 1] if follow and still else data  # a partial line waits
            offsets[path] = offsets.get(path, 0) + len(complete)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                yield label(path), line
        if not follow or not still:
            return
        time.sleep(FOLLOW_POLL_SECONDS)
