"""A pipeline step's life, written once for both drivers: local mode (local.py) and the
operator (operator/pipelines/reconcile.py).

    begin     resolve the step (resolve.resolve_step); reuse an earlier success whose outputs
              are still there and still its own (owners.reusable); else claim its output places
              for this execution (owners.claim), before anything writes them
    (driver)  start the step and watch it: a process here, Jobs and BatchInferenceJobs there
    remember  after a success, the step's entry in the reuse index (a step with reuse)

A driver hands over the reuse index's storage as a StepStore with its own fault policy:
local mode fails the step when storage fails; the operator waits for storage that does
not answer, and does without reuse where storage refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..records import ReuseEntry
from . import dag, reuse
from .resolve import ResolvedStep, ResolveError, resolve_step
from .spec import PipelineSpec, Step


class StepStore(Protocol):
    """The reuse index and the output claims of one pipeline's workdir."""

    def reusable(self, step: ResolvedStep, needs_reused: bool) -> ReuseEntry | None: ...

    def claim(self, outputs: Mapping[str, str], execution: str) -> None: ...

    def write_entry(self, entry: ReuseEntry) -> None: ...


@dataclass(frozen=True)
class Refused:
    """The step cannot start (an expression that does not resolve, a bad component input)."""

    message: str


@dataclass(frozen=True)
class Reused:
    step: ResolvedStep
    entry: ReuseEntry  # the earlier success: its outputs are the step's


@dataclass(frozen=True)
class Claimed:
    """Its outputs are this execution's: the driver starts it."""

    step: ResolvedStep


def begin(spec: PipelineSpec, step: Step, store: StepStore, execution: str, *, finished: Mapping[str, Mapping],
          states: Mapping[str, str], upstream: Mapping[str, str], run_status: str | None,
          component_text: bytes | None, code_digest: Callable[[str], Any], reuse_allowed: bool = True,
          ) -> Refused | Reused | Claimed:
    """Resolve `step` with the outputs of the steps `finished` and the fingerprints `upstream`,
    then reuse or claim. `states`: every step's state (a step without outputs is reused only
    when the steps it needs were reused too)."""
    try:
        resolved = resolve_step(spec, step, finished, run_status, component_text=component_text,
                                code_digest=code_digest, upstream=upstream)
    except ResolveError as e:
        return Refused("; ".join(e.errors))
    if reuse_allowed:
        needs_reused = all(states.get(need) == dag.REUSED for need in step.needs)
        entry = store.reusable(resolved, needs_reused)
        if entry is not None:
            return Reused(resolved, entry)
    store.claim(resolved.outputs, execution)
    return Claimed(resolved)


def remember(store: StepStore, step: Step, fingerprint: str | None, outputs: Mapping[str, str], run: str,
             execution: str | None, finished_at: datetime) -> None:
    """After a success: the index entry, so a later run with the same fingerprint reuses it."""
    if step.reuse and fingerprint:
        store.write_entry(reuse.index_entry(fingerprint, outputs, run, step.name, finished_at, execution))
