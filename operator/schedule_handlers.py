"""kopf handlers of PipelineSchedule: thin, the work is in schedule.py.

    daemon      one per schedule: its ScheduleLoop, woken by the events below
    index       the schedules' PipelineRuns by the uid of the schedule owning them
    event       a schedule's change (spec, run-now annotation) or one of its runs' wakes its loop

handlers.py imports this module; the API client and login are handlers.py's.
"""

from __future__ import annotations

import kopf

from parallelrun.runner.schedules.runs import LABEL_SCHEDULE

from .manifests import GROUP, VERSION
from .reconcile import Wakeups
from .schedule import PLURAL, RUNS, Clock, ScheduleLoop, owner_uid, run_of

SCHEDULED = {LABEL_SCHEDULE: kopf.PRESENT}


@kopf.on.startup()
def configure_schedules(memo: kopf.Memo, **_) -> None:
    memo.schedule_wakeups = Wakeups()
    memo.setdefault("schedule_clock", Clock())


@kopf.index(GROUP, VERSION, RUNS, labels=SCHEDULED)
def runs_by_schedule(body: kopf.Body, **_):
    uid = owner_uid(body)
    return {uid: run_of(body)} if uid else None


@kopf.on.event(GROUP, VERSION, RUNS, labels=SCHEDULED)
def run_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    uid = owner_uid(body)
    if uid:
        memo.schedule_wakeups.wake(uid)


@kopf.on.event(GROUP, VERSION, PLURAL)
def schedule_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    memo.schedule_wakeups.wake(body["metadata"]["uid"])


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5, backoff=10)
async def run_schedule(body: kopf.Body, memo: kopf.Memo, runs_by_schedule: kopf.Index, logger: kopf.Logger,
                       **_) -> None:
    uid = body["metadata"]["uid"]
    loop = ScheduleLoop(body, memo.services.api, lambda: runs_by_schedule.get(uid, ()), memo.schedule_clock,
                        logger)
    try:
        await loop.drive(memo.schedule_wakeups.event(uid))
    finally:
        memo.schedule_wakeups.forget(uid)
