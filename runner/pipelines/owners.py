"""Which step execution last wrote each output place, so that reuse never hands out overwritten outputs.

A component's outputs have fixed places (`<run.workdir>/<step>/<output>/`), so two
executions with different fingerprints, say `maxIter` 1000 and then 200 in the same
run name, write the same folder. The index entry of the first still names that
folder, which now holds the second's result. So before a step runs, it claims its
output places (`claim`): `<workdir>/_parallelrun/cache/outputs/<hash of the URI>.json`
names its fingerprint. A step is reused only while every output place is still
claimed by its fingerprint (`owned`), besides its index entry matching and its
outputs existing (reuse.decide). A claim is written before the step starts, so an
execution that fails halfway also takes the place from the earlier one.

`reusable` is the whole decision, for local mode and the operator alike; a step
without outputs (its effects are elsewhere, unclaimed) is reused only when every step
it needs was reused in this run too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from fsspec import AbstractFileSystem

from ..storage import filesystem
from . import reuse
from .resolved import ResolvedStep


def owner_path(workdir: str, uri: str) -> str:
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:32]
    return f"{workdir.rstrip('/')}/{reuse.CACHE_FOLDER}/outputs/{digest}.json"


def claim(fs: AbstractFileSystem, workdir: str, outputs: Mapping[str, str], fingerprint: str) -> None:
    """Record that the execution with `fingerprint` is about to write `outputs`."""
    for uri in outputs.values():
        path = owner_path(workdir, uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, json.dumps({"uri": uri, "fingerprint": fingerprint}).encode())


def owned(fs: AbstractFileSystem, workdir: str, outputs: Mapping[str, str], fingerprint: str) -> bool:
    """Whether every output place was last claimed by `fingerprint` (unclaimed or unreadable: no)."""
    for uri in outputs.values():
        try:
            record = json.loads(fs.cat_file(owner_path(workdir, uri)))
        except (FileNotFoundError, ValueError):
            return False
        if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
            return False
    return True


def reusable(fs: AbstractFileSystem, workdir: str, step: ResolvedStep, needs_reused: bool) -> dict | None:
    """The index entry `step` may reuse (its `outputs` are the step's outputs then), or None to run it.

    `fs` serves `workdir` (the pipeline's, where the index is); `needs_reused`: every
    step it needs was Reused in this run, not run again.
    """
    if not step.reuse or (not step.outputs and not needs_reused):
        return None
    entry = reuse.read_entry(fs, workdir, step.fingerprint)
    outputs = (entry or {}).get("outputs") or {}
    if not reuse.decide(step.fingerprint, entry, _exist(outputs), True):
        return None
    return entry if owned(fs, workdir, outputs, step.fingerprint) else None


def _exist(outputs: Mapping[str, str]) -> bool:
    """Whether every output is there, each on its own storage (a job's output may be elsewhere)."""
    for uri in outputs.values():
        fs, path = filesystem(uri)
        if not fs.exists(path):
            return False
    return True
