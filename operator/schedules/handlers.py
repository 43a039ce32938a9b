"""kopf handlers of PipelineSchedule: thin, the work is in controller.py.

    daemon      one per schedule: its ScheduleController, woken by the events below
    index       the schedules' PipelineRuns by the uid of the schedule owning them
    event       a schedule's change (spec, run-now annotation) or one of its runs' wakes its loop;
                the loop's own status writes do not (they would wake it again and again)

The index and event handlers are coroutines: kopf runs a plain function in a thread,
a hop that costs more than these handlers' own work when a thousand runs appear at once.
"""

from __future__ import annotations

import kopf

from parallelrun.runner.api import ANNOTATION_RUN_NOW, GROUP, LABEL_SCHEDULE, PIPELINE_RUN, PIPELINE_SCHEDULE, VERSION

from ..kit.clock import Clock
from ..kit.controller import Wakeups
from .controller import ScheduleController, owner_uid, run_of

SCHEDULED = {LABEL_SCHEDULE: kopf.PRESENT}
PLURAL, RUNS = PIPELINE_SCHEDULE.plural, PIPELINE_RUN.plural


@kopf.on.startup()
def configure_schedules(memo: kopf.Memo, **_) -> None:
    memo.schedule_wakeups = Wakeups()
    memo.schedule_seen = {}  # uid -> (generation, run-now value) last seen
    memo.run_phases = {}  # run uid -> phase last seen
    memo.setdefault("schedule_clock", Clock())


@kopf.index(GROUP, VERSION, RUNS, labels=SCHEDULED)
async def runs_by_schedule(body: kopf.Body, **_):
    uid = owner_uid(body)
    return {uid: run_of(body)} if uid else None


@kopf.on.event(GROUP, VERSION, RUNS, labels=SCHEDULED)
async def run_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A run's phase changed, or it is gone: its schedule may start or prune runs (a new run
    changes nothing: its schedule made it)."""
    uid, run_uid, phase = owner_uid(body), body["metadata"]["uid"], (body.get("status") or {}).get("phase")
    if event["type"] == "DELETED":
        memo.run_phases.pop(run_uid, None)
    elif memo.run_phases.setdefault(run_uid, phase) == phase:
        return
    memo.run_phases[run_uid] = phase
    if uid:
        memo.schedule_wakeups.wake(uid)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def schedule_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    meta = body["metadata"]
    uid, seen = meta["uid"], (meta.get("generation"), (meta.get("annotations") or {}).get(ANNOTATION_RUN_NOW))
    if event["type"] == "DELETED":
        memo.schedule_seen.pop(uid, None)
    elif memo.schedule_seen.get(uid) != seen:
        memo.schedule_seen[uid] = seen
        memo.schedule_wakeups.wake(uid)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5, backoff=10)  # type: ignore[arg-type]  # kopf passes indexes by keyword, which its DaemonFn protocol cannot name
async def run_schedule(body: kopf.Body, memo: kopf.Memo, runs_by_schedule: kopf.Index, logger: kopf.Logger,
                       **_) -> None:
    uid = body["metadata"]["uid"]
    controller = ScheduleController(body, memo.services, memo.creates, lambda: runs_by_schedule.get(uid, ()),
                                    memo.schedule_clock, logger)
    await memo.schedule_wakeups.drive(uid, controller)
