"""Live counts of the shards still running: the progress files their pods publish.

A scoring pod reports its counts in its termination message only when it ends, and a
shard may run for hours. The runner also publishes the shard's counts so far every
few seconds (Layout.progress); the operator reads those of the shards not yet done,
so status.progress moves while the pods run and a threshold crossed by the sum stops
the Job before the pods finish.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from parallelrun.runner.accounting import Counts
from parallelrun.runner.layout import Layout
from parallelrun.runner.spec import JobSpec
from parallelrun.runner.storage import filesystem


def read_progress(spec: JobSpec, run_id: str, env: Mapping[str, str], indexes: Iterable[int]) -> dict[int, Counts]:
    """The published counts of these shards; a shard that has published nothing yet is left out.

    Blocking storage reads: call it in a thread.
    """
    fs, path = filesystem(spec.output.uri, env)
    layout = Layout(path, run_id, spec.output.format)
    found = {}
    for index in indexes:
        try:
            with fs.open(layout.progress(index), "rb") as f:
                found[index] = Counts.from_dict(json.load(f))
        except FileNotFoundError:
            continue
    return found
