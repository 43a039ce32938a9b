"""Status phases and conditions of every kind, by the Kubernetes API conventions: pure functions.

    phase       Pending → Planning → Running → Merging → Succeeded | Failed; Queued between Planning and
                Running while a Kueue LocalQueue has not admitted the scoring Job
    conditions  Running    True while planning, scoring or merging; False at the end
                Succeeded  True once the output is written  (kubectl wait --for=condition=Succeeded)
                Failed     True with the reason: InvalidSpec, PlanFailed, ErrorThresholdExceeded,
                           ConfigurationError, RetriesExhausted, ScoringJobFailed, MergeFailed;
                           Forbidden, Invalid, ApiRejected: the API refused a request for good (kube.py)
                AllItemsFailed  True when the run succeeded (thresholds of -1) with every item failed
                SpecChangeRefused  True while the spec differs from the one the run started with
                Queued     True while a Job waits for Kueue's admission; False once admitted
                Reconciling, Stalled  kstatus' pair, as Flux and kpt read it:
                           Reconciling True until the end; Stalled True once Failed

A condition's lastTransitionTime moves only when its status flips; every condition
carries the generation it was written for.
"""

from __future__ import annotations

import datetime
from typing import Literal, get_args

Phase = Literal["Pending", "Planning", "Running", "Merging", "Succeeded", "Failed", "Queued"]
PENDING, PLANNING, RUNNING, MERGING, SUCCEEDED, FAILED, QUEUED = get_args(Phase)
TERMINAL: tuple[Phase, ...] = (SUCCEEDED, FAILED)
SPEC_CHANGE_REFUSED = "SpecChangeRefused"

# The Running condition's reason in each phase that is not the end.
_RUNNING_REASONS: dict[Phase, str] = {PENDING: "Waiting", PLANNING: "Planning", RUNNING: "Scoring", MERGING: "Merging",
                                      QUEUED: "Queued"}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[dict], type_: str, status: bool, reason: str, message: str,
                  generation: int | None, at: str) -> list[dict]:
    """`conditions` with `type_` set; the others as they were."""
    value = "True" if status else "False"
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != value
    since = at if previous is None or changed else previous.get("lastTransitionTime", at)
    condition = {"type": type_, "status": value, "reason": reason, "message": message, "lastTransitionTime": since}
    if generation is not None:
        condition["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != type_] + [condition]


def condition_true(status: dict, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or [])


def remove_condition(conditions: list[dict], type_: str) -> list[dict]:
    return [c for c in conditions if c.get("type") != type_]


def with_phase(status: dict, phase: Phase, reason: str, message: str, generation: int | None,
               at: str | None = None) -> dict:
    """`status` moved to `phase` (a new dict)."""
    at = at or now()
    new = dict(status, phase=phase, message=message)
    if generation is not None:
        new["observedGeneration"] = generation
    conditions = list(status.get("conditions") or [])
    if phase in TERMINAL:
        conditions = set_condition(conditions, "Running", False, phase, message, generation, at)
        conditions = set_condition(conditions, "Reconciling", False, phase, message, generation, at)
        conditions = set_condition(conditions, phase, True, reason, message, generation, at)
        if phase == FAILED:
            conditions = set_condition(conditions, "Stalled", True, reason, message, generation, at)
        new.setdefault("completionTime", at)
    else:
        reason = reason or _RUNNING_REASONS[phase]
        conditions = set_condition(conditions, "Running", phase != PENDING, reason, message, generation, at)
        conditions = set_condition(conditions, "Reconciling", True, reason, message, generation, at)
        if phase != PENDING:
            new.setdefault("startTime", at)
    new["conditions"] = conditions
    return new


def with_spec_check(status: dict, refusal: str | None, generation: int | None, at: str | None = None) -> dict:
    """`status` with SpecChangeRefused set (a message says why) or cleared (None)."""
    conditions = list(status.get("conditions") or [])
    if refusal is None:
        conditions = remove_condition(conditions, SPEC_CHANGE_REFUSED)
    else:
        conditions = set_condition(conditions, SPEC_CHANGE_REFUSED, True, "ImmutableAfterStart", refusal,
                                   generation, at or now())
    new = dict(status, conditions=conditions)
    if generation is not None:
        new["observedGeneration"] = generation
    return new


def with_warning(status: dict, type_: str, message: str, generation: int | None, at: str | None = None) -> dict:
    """`status` with the condition `type_` True for a warning about the outcome (e.g. AllItemsFailed)."""
    conditions = set_condition(list(status.get("conditions") or []), type_, True, type_, message, generation,
                               at or now())
    return dict(status, conditions=conditions)
