"""A PipelineSchedule's status, from the policy engine's decision and the runs (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from parallelrun.runner.schedules.policy import Decision, Run
from parallelrun.runner.schedules.runs import rfc3339
from parallelrun.runner.schedules.spec import ScheduleSpec

from ..kit.conditions import set_condition

RECENT_RUNS = 10


def runs_status(runs: Iterable[Run]) -> dict:
    """active, activeCount and recentRuns (newest first)."""
    ordered = sorted(runs, key=lambda r: (r.slot or r.created or datetime.min, r.name), reverse=True)
    return {
        "active": sorted(r.name for r in ordered if r.active),
        "activeCount": sum(r.active for r in ordered),
        "recentRuns": [{"name": r.name, "trigger": r.trigger, "phase": r.phase or "Pending",
                        **({"slot": rfc3339(r.slot)} if r.slot else {})} for r in ordered[:RECENT_RUNS]],
    }


def schedule_status(status: dict, spec: ScheduleSpec, decision: Decision, runs: list[Run], now: datetime,
                    generation: int | None) -> dict:
    """The status after a look: memory, next times, runs, conditions. `status` is the one before."""
    at = rfc3339(now)
    assert decision.memory.handled_until is not None  # decide() moves it to now at least
    new = {**status, **runs_status(runs), "scheduleText": spec.schedule_text,
           "nextScheduleTimes": [rfc3339(t) for t in decision.upcoming],
           "nextScheduleTime": rfc3339(decision.upcoming[0]) if decision.upcoming else None,
           "handledUntil": rfc3339(decision.memory.handled_until), "observedGeneration": generation}
    if decision.memory.run_now is not None:
        new["runNow"] = decision.memory.run_now
    slots = [f.slot for f in decision.create if f.trigger == "schedule"]
    if slots:
        new["lastScheduleTime"] = rfc3339(max(slots))
    before = {r.get("name"): r.get("phase") for r in status.get("recentRuns") or []}
    if any(r.phase == "Succeeded" and before.get(r.name) not in (None, "Succeeded") for r in runs):
        new["lastSuccessfulTime"] = at
    conditions = status.get("conditions") or []
    conditions = set_condition(conditions, "InvalidSchedule", False, "Valid", "the spec is valid", generation, at)
    conditions = set_condition(conditions, "Suspended", spec.suspend, "Suspended" if spec.suspend else "Running",
                               "spec.suspend is true: no slot starts a run" if spec.suspend else "slots start runs",
                               generation, at)
    next_text = f"next run at {new['nextScheduleTime']}" if decision.upcoming else (
        "waiting for data" if spec.trigger else "runs only when triggered (annotation parallelrun.dev/run-now)")
    new["conditions"] = set_condition(conditions, "Ready", True, "Scheduled", next_text, generation, at)
    return new


def invalid_status(status: dict, errors: list[str], generation: int | None, now: datetime) -> dict:
    """The status of a schedule whose spec is invalid: InvalidSchedule with every field and its fix."""
    at, message = rfc3339(now), "; ".join(errors)
    conditions = set_condition(status.get("conditions") or [], "InvalidSchedule", True, "InvalidSpec", message,
                               generation, at)
    conditions = set_condition(conditions, "Ready", False, "InvalidSchedule", message, generation, at)
    return {**status, "conditions": conditions, "observedGeneration": generation, "handledUntil": at,
            "nextScheduleTimes": [], "nextScheduleTime": None}
