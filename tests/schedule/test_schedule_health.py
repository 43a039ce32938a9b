"""The chart's Argo CD health check on the statuses the schedule controller writes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from lupa import lua51

from parallelrun.operator.schedules.status import invalid_status, schedule_status
from parallelrun.runner.schedules.policy import Memory, decide
from parallelrun.runner.schedules.spec import load_schedule

from .schedules import schedule

SCRIPT = (Path(__file__).resolve().parents[2] / "charts/parallelrun/files/argocd-health.lua").read_text()
NOW = datetime(2026, 1, 5, 6, 0, 30, tzinfo=timezone.utc)


def health(status: dict, generation: int = 1) -> dict:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    conditions = {i + 1: c for i, c in enumerate(status.get("conditions") or [])}
    obj = {"kind": "PipelineSchedule", "metadata": {"generation": generation},
           "status": {**status, "conditions": conditions, "nextScheduleTimes": None, "active": None,
                      "recentRuns": None}}
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


def status_of(**fields) -> dict:
    spec = load_schedule(schedule(**fields))
    return schedule_status({}, spec, decide(spec, Memory(), [], NOW, generation=1), [], NOW, 1)


def test_health_of_a_schedule():
    assert health(status_of()) == {"status": "Healthy", "message": "next run at 2026-01-05T06:01:00Z"}
    assert health(status_of(suspend=True))["status"] == "Suspended"
    assert health(status_of(), generation=2)["status"] == "Progressing"
    invalid = invalid_status({}, ["spec.schedule.cron: bad; fix"], 1, NOW)
    assert health(invalid) == {"status": "Degraded", "message": "InvalidSchedule: spec.schedule.cron: bad; fix"}
