"""Which step execution last wrote each output place, so that reuse never hands out overwritten outputs.

A component's outputs have fixed places (`<run.workdir>/<step>/<output>/`), so two
executions, say with `maxIter` 1000 and then 200 in the same run name, write the same
folder, and the index entry of the first names a folder that now holds the second's
result. So each execution has an id (`new_execution`): before it starts it claims its
output places (`claim`: `<workdir>/_parallelrun/cache/outputs/<hash of the URI>.json`
names it), and its index entry, written after it succeeded, carries the id too
(lifecycle.remember). An entry is reused only while every output place is still claimed by its
execution (`owned`): one that started since, even one that failed halfway (a partial
upload) or had the same fingerprint, takes the places from it.

`reusable` is the whole decision, for local mode and the operator alike; a step
without outputs (its effects are elsewhere, unclaimed) is reused only when every step
it needs was reused in this run too.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping

from fsspec import AbstractFileSystem

from ..records import OutputOwner, ReuseEntry
from ..storage import filesystem
from . import reuse
from .resolved import ResolvedStep


def owner_path(workdir: str, uri: str) -> str:
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:32]
    return f"{workdir.rstrip('/')}/{reuse.CACHE_FOLDER}/outputs/{digest}.json"


def new_execution() -> str:
    return uuid.uuid4().hex


def claim(fs: AbstractFileSystem, workdir: str, outputs: Mapping[str, str], execution: str) -> None:
    """Record that `execution` is about to write `outputs`."""
    for uri in outputs.values():
        path = owner_path(workdir, uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, json.dumps(OutputOwner(uri, execution).to_dict()).encode())


def owned(fs: AbstractFileSystem, workdir: str, outputs: Mapping[str, str], execution: str | None) -> bool:
    """Whether every output place was last claimed by `execution` (unclaimed or unreadable: no)."""
    for uri in outputs.values():
        try:
            owner = OutputOwner.from_dict(json.loads(fs.cat_file(owner_path(workdir, uri))))
        except (FileNotFoundError, ValueError):
            return False
        if execution is None or owner.execution != execution:
            return False
    return True


def reusable(fs: AbstractFileSystem, workdir: str, step: ResolvedStep, needs_reused: bool,
             env: Mapping[str, str] | None = None) -> ReuseEntry | None:
    """The index entry `step` may reuse (its `outputs` are the step's outputs then), or None to run it.

    `fs` serves `workdir` (the pipeline's, where the index is); `needs_reused`: every
    step it needs was Reused in this run, not run again; `env`: the credentials of the
    outputs' storage (the operator's, from the run's Secret; None: this process's).
    """
    if not step.reuse or (not step.outputs and not needs_reused):
        return None
    found = reuse.read_entry(fs, workdir, step.fingerprint)
    outputs = found.outputs if found else {}
    if found is None or not reuse.decide(step.fingerprint, found, _exist(outputs, env), True):
        return None
    return found if owned(fs, workdir, outputs, found.execution) else None


def _exist(outputs: Mapping[str, str], env: Mapping[str, str] | None) -> bool:
    """Whether every output is there, each on its own storage (a job's output may be elsewhere)."""
    for uri in outputs.values():
        fs, path = filesystem(uri, env)
        if not fs.exists(path):
            return False
    return True
