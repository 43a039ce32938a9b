"""kopf handlers of PipelineRun: thin, the work is in reconcile.py.

    daemon      one per unfinished run: its PipelineReconciler, woken by the events below
    index       a run's step Jobs, their pods and its BatchInferenceJobs by the run's uid (label-selected)
    event       a child's or the run's change wakes the run's daemon
"""

from __future__ import annotations

import kopf

from parallelrun.runner.api import BATCH_INFERENCE_JOB, GROUP, LABEL_RUN_UID, PIPELINE_RUN, VERSION

from ..kit.conditions import TERMINAL
from ..kit.controller import refuse_change_after_finish
from .reconcile import PipelineReconciler
from .status import batch_job_child, job_child, step_pod

STEP_CHILDREN = {LABEL_RUN_UID: kopf.PRESENT}
PLURAL = PIPELINE_RUN.plural


@kopf.index("batch", "v1", "jobs", labels=STEP_CHILDREN)
async def step_jobs_by_run(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_RUN_UID]: job_child(body)}


@kopf.index("pods", labels=STEP_CHILDREN)
def step_pods_by_run(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_RUN_UID]: step_pod(body)}


@kopf.index(GROUP, VERSION, BATCH_INFERENCE_JOB.plural, labels=STEP_CHILDREN)
async def step_batch_jobs_by_run(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_RUN_UID]: batch_job_child(body)}


@kopf.on.event("batch", "v1", "jobs", labels=STEP_CHILDREN)
@kopf.on.event(GROUP, VERSION, BATCH_INFERENCE_JOB.plural, labels=STEP_CHILDREN)
async def step_child_changed(labels: kopf.Labels, memo: kopf.Memo, **_) -> None:
    memo.wakeups.wake(labels[LABEL_RUN_UID])


@kopf.on.event(GROUP, VERSION, PLURAL)
async def pipeline_changed(event: kopf.RawEvent, body: kopf.Body, status: kopf.Status, memo: kopf.Memo, **_) -> None:
    memo.wakeups.wake(body["metadata"]["uid"])
    if event["type"] != "DELETED" and status.get("phase") in TERMINAL:
        await refuse_change_after_finish(PIPELINE_RUN, body, memo.services.api)


def _unfinished(status: kopf.Status, **_) -> bool:
    return status.get("phase") not in TERMINAL


@kopf.daemon(GROUP, VERSION, PLURAL, when=_unfinished, cancellation_timeout=5, backoff=15)  # type: ignore[arg-type]  # kopf passes indexes by keyword, which its DaemonFn protocol cannot name
async def run_pipeline(body: kopf.Body, memo: kopf.Memo, step_jobs_by_run: kopf.Index,
                       step_batch_jobs_by_run: kopf.Index, step_pods_by_run: kopf.Index, logger: kopf.Logger,
                       **_) -> None:
    uid = body["metadata"]["uid"]
    await memo.creates.wait(body["metadata"]["name"])  # when many schedules fire at once, their runs are created first
    reconciler = PipelineReconciler(
        body, memo.services, lambda: [*step_jobs_by_run.get(uid, ()), *step_batch_jobs_by_run.get(uid, ())],
        pods=lambda: step_pods_by_run.get(uid, ()), logger=logger)
    await memo.wakeups.drive(uid, reconciler)
