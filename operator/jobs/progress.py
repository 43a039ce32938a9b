"""Live counts of a run: the progress files its scoring pods publish.

A scoring pod reports its counts in its termination message only when it ends, and a
shard may run for hours. The runner also publishes its counts so far every few seconds,
with each chunk's it holds (records.ShardProgress); the operator reads them all, so
status.progress moves while the pods run, counts work wherever it was done (a chunk
taken over from a dead pod, the indexes a scale-down removed), and a threshold crossed
by the sum stops the Job before the pods finish.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from parallelrun.runner.layout import Layout
from parallelrun.runner.records import ShardProgress
from parallelrun.runner.spec import JobSpec
from parallelrun.runner.storage import filesystem

_PROGRESS_FILE = re.compile(r"^(\d+)\.json$")


def read_progress(spec: JobSpec, run_id: str, env: Mapping[str, str]) -> dict[int, ShardProgress]:
    """Every pod index's published progress (a listing and a read each; none before the first).

    Blocking storage reads: call it in a thread.
    """
    fs, path = filesystem(spec.output.uri, env)
    layout = Layout(path, run_id, spec.output.format)
    try:
        names = fs.ls(layout.progress_dir, detail=False)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        if match := _PROGRESS_FILE.match(os.path.basename(name.rstrip("/"))):
            try:
                with fs.open(layout.progress(int(match[1])), "rb") as f:
                    found[int(match[1])] = ShardProgress.from_dict(json.load(f))
            except FileNotFoundError:
                continue
    return found
