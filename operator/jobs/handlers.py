"""kopf handlers of BatchInferenceJob: thin, the work is in reconcile.py.

    daemon      one per unfinished resource: its Reconciler, woken by the events below
    index       pods and Jobs by the uid of the BatchInferenceJob they belong to (label-selected)
    event       a child's or the resource's change wakes the resource's daemon
"""

from __future__ import annotations

import kopf

from parallelrun.runner.api import BATCH_INFERENCE_JOB, GROUP, LABEL_JOB_UID, VERSION

from ..kit.conditions import TERMINAL
from ..kit.controller import refuse_change_after_finish
from ..kit.metrics import PhaseGauge
from ..kit.observe import job_state, pod_state
from .planning import Planner
from .reconcile import Reconciler

CHILDREN = {LABEL_JOB_UID: kopf.PRESENT}
PLURAL = BATCH_INFERENCE_JOB.plural


@kopf.on.startup()
def configure_jobs(memo: kopf.Memo, **_) -> None:
    memo.planner = Planner()
    memo.phases = PhaseGauge()


@kopf.on.cleanup()
async def close_jobs(memo: kopf.Memo, **_) -> None:
    memo.planner.close()


@kopf.index("pods", labels=CHILDREN)
def pods_by_owner(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_JOB_UID]: pod_state(body)}


@kopf.index("batch", "v1", "jobs", labels=CHILDREN)
def jobs_by_owner(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_JOB_UID]: job_state(body)}


@kopf.on.event("pods", labels=CHILDREN)
@kopf.on.event("batch", "v1", "jobs", labels=CHILDREN)
def child_changed(labels: kopf.Labels, memo: kopf.Memo, **_) -> None:
    memo.wakeups.wake(labels[LABEL_JOB_UID])


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_changed(event: kopf.RawEvent, body: kopf.Body, status: kopf.Status, memo: kopf.Memo,
                           **_) -> None:
    uid = body["metadata"]["uid"]
    if event["type"] == "DELETED":
        memo.phases.forget(uid)
        return
    memo.phases.observe(uid, status.get("phase"))
    memo.wakeups.wake(uid)
    if status.get("phase") in TERMINAL:
        await refuse_change_after_finish(BATCH_INFERENCE_JOB, body, memo.services.api)


def _unfinished(status: kopf.Status, **_) -> bool:
    return status.get("phase") not in TERMINAL


@kopf.daemon(GROUP, VERSION, PLURAL, when=_unfinished, cancellation_timeout=5, backoff=15)  # type: ignore[arg-type]  # kopf passes indexes by keyword, which its DaemonFn protocol cannot name
async def run(body: kopf.Body, memo: kopf.Memo, pods_by_owner: kopf.Index, jobs_by_owner: kopf.Index,
              logger: kopf.Logger, **_) -> None:
    uid = body["metadata"]["uid"]
    reconciler = Reconciler(body, memo.services, memo.planner, pods=lambda: pods_by_owner.get(uid, ()),
                            jobs=lambda: jobs_by_owner.get(uid, ()), logger=logger)
    await memo.wakeups.drive(uid, reconciler)
