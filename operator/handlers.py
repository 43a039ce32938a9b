"""kopf handlers of BatchInferenceJob and PipelineRun: thin, the work is in reconcile.py
and pipeline_reconcile.py.

    daemon      one per unfinished resource: its reconciler, woken by the events below
    index       pods and Jobs by the uid of the BatchInferenceJob they belong to; a PipelineRun's
                step Jobs, their pods and BatchInferenceJobs by the run's uid (all label-selected)
    event       a child's or the resource's change wakes the resource's daemon

Run it with `parallelrun operator` (main.py) or `kopf run -m parallelrun.operator.handlers`.
The operator-wide services live in kopf's memo; a caller may put `connection`
(a kopf.ConnectionInfo), `default_image` and `local_storage` there before starting the operator.
"""

from __future__ import annotations

import logging
import os

import kopf

from .aggregation import job_state, pod_state
from .kube import KubeApi
from .manifests import FINALIZER, GROUP, LABEL_UID, PLURAL, VERSION
from .metrics import PhaseGauge
from .pipeline_manifests import LABEL_MANAGED_BY, LABEL_RUN_UID, MANAGED_BY
from .pipeline_manifests import PLURAL as PIPELINE_PLURAL
from .pipeline_reconcile import PipelineReconciler
from .pipeline_status import batch_job_child, job_child, step_pod
from .planning import Planner
from .reconcile import Reconciler, Services, Wakeups, refuse_change_after_finish
from .status import TERMINAL

CHILDREN = {LABEL_UID: kopf.PRESENT}
STEP_CHILDREN = {LABEL_RUN_UID: kopf.PRESENT}
_WAKE_UP_HANDLERS = ("child_changed", "resource_changed", "step_child_changed", "pipeline_changed")


class _QuietWakeUps(logging.Filter):
    """Drops kopf's "Handler 'child_changed' succeeded." lines: one per pod event, they say nothing."""

    _MESSAGES = {f"Handler {name!r} succeeded." for name in _WAKE_UP_HANDLERS}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._MESSAGES


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="parallelrun.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="parallelrun.dev")
    settings.posting.level = logging.WARNING  # Events: the reconciler's own, plus kopf's warnings and errors
    # The API server sends only ours, not every pod and Job of the cluster.
    for children in ("pods", ("batch", "jobs")):  # of runs and of pipeline steps
        settings.watching.label_selectors[children] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietWakeUps) for f in objects.filters):
        objects.addFilter(_QuietWakeUps())
    memo.setdefault("connection", None)
    memo.services = Services(api=KubeApi(), planner=Planner(),
                             default_image=memo.get("default_image") or os.environ.get("PARALLELRUN_JOB_IMAGE"),
                             local_storage=bool(memo.get("local_storage")))
    memo.wakeups = Wakeups()
    memo.phases = PhaseGauge()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_) -> None:
    memo.services.planner.close()
    await memo.services.api.close()


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs) -> kopf.ConnectionInfo:
    """kopf's usual login (in-cluster, else kubeconfig), shared with the reconciler's client."""
    info = (memo.get("connection") or kopf.login_via_client(**kwargs)
            or kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs))
    if info is None:
        raise kopf.LoginError("no credentials: neither in a cluster nor a kubeconfig")
    await memo.services.api.connect(info)
    await memo.schedule_creates.connect(info)  # the schedules' own client for creates (schedule.py)
    return info


@kopf.index("pods", labels=CHILDREN)
def pods_by_owner(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_UID]: pod_state(body)}


@kopf.index("batch", "v1", "jobs", labels=CHILDREN)
def jobs_by_owner(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_UID]: job_state(body)}


@kopf.on.event("pods", labels=CHILDREN)
@kopf.on.event("batch", "v1", "jobs", labels=CHILDREN)
def child_changed(labels: kopf.Labels, memo: kopf.Memo, **_) -> None:
    memo.wakeups.wake(labels[LABEL_UID])


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
        await refuse_change_after_finish(body, memo.services.api)


def _unfinished(status: kopf.Status, **_) -> bool:
    return status.get("phase") not in TERMINAL


@kopf.daemon(GROUP, VERSION, PLURAL, when=_unfinished, cancellation_timeout=5, backoff=15)
async def run(body: kopf.Body, memo: kopf.Memo, pods_by_owner: kopf.Index, jobs_by_owner: kopf.Index,
              logger: kopf.Logger, **_) -> None:
    uid = body["metadata"]["uid"]
    reconciler = Reconciler(body, memo.services, pods=lambda: pods_by_owner.get(uid, ()),
                            jobs=lambda: jobs_by_owner.get(uid, ()), logger=logger)
    try:
        await reconciler.drive(memo.wakeups.event(uid))
    finally:
        memo.wakeups.forget(uid)


# -- PipelineRun ----------------------------------------------------------------------------


@kopf.index("batch", "v1", "jobs", labels=STEP_CHILDREN)
async def step_jobs_by_run(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_RUN_UID]: job_child(body)}


@kopf.index("pods", labels=STEP_CHILDREN)
def step_pods_by_run(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_RUN_UID]: step_pod(body)}


@kopf.index(GROUP, VERSION, PLURAL, labels=STEP_CHILDREN)
async def step_batch_jobs_by_run(body: kopf.Body, labels: kopf.Labels, **_):
    return {labels[LABEL_RUN_UID]: batch_job_child(body)}


@kopf.on.event("batch", "v1", "jobs", labels=STEP_CHILDREN)
@kopf.on.event(GROUP, VERSION, PLURAL, labels=STEP_CHILDREN)
async def step_child_changed(labels: kopf.Labels, memo: kopf.Memo, **_) -> None:
    memo.wakeups.wake(labels[LABEL_RUN_UID])


@kopf.on.event(GROUP, VERSION, PIPELINE_PLURAL)
async def pipeline_changed(event: kopf.RawEvent, body: kopf.Body, status: kopf.Status, memo: kopf.Memo, **_) -> None:
    memo.wakeups.wake(body["metadata"]["uid"])
    if event["type"] != "DELETED" and status.get("phase") in TERMINAL:
        await refuse_change_after_finish(body, memo.services.api, PIPELINE_PLURAL)


@kopf.daemon(GROUP, VERSION, PIPELINE_PLURAL, when=_unfinished, cancellation_timeout=5, backoff=15)
async def run_pipeline(body: kopf.Body, memo: kopf.Memo, step_jobs_by_run: kopf.Index,
                       step_batch_jobs_by_run: kopf.Index, step_pods_by_run: kopf.Index, logger: kopf.Logger,
                       **_) -> None:
    uid = body["metadata"]["uid"]
    await memo.schedule_creates.wait()  # when many schedules fire at once, their runs are all created first
    reconciler = PipelineReconciler(
        body, memo.services, lambda: [*step_jobs_by_run.get(uid, ()), *step_batch_jobs_by_run.get(uid, ())],
        pods=lambda: step_pods_by_run.get(uid, ()), logger=logger)
    try:
        await reconciler.drive(memo.wakeups.event(uid))
    finally:
        memo.wakeups.forget(uid)


# PipelineSchedule (issue 8): its handlers live in schedule_handlers.py.
from . import schedule_handlers  # noqa: E402,F401  (registers them with kopf)
