"""The operator: the kit's operator-wide services, and every kind's kopf handlers.

    jobs/handlers.py        BatchInferenceJob
    pipelines/handlers.py   PipelineRun
    schedules/handlers.py   PipelineSchedule

Run it with `parallelrun operator` (main.py) or `kopf run -m parallelrun.operator.handlers`.
The operator-wide services live in kopf's memo; a caller may put `connection`
(a kopf.ConnectionInfo) and `default_image` there before starting the operator, and a
test its own `wakeups` and `creates` to watch them.
"""

from __future__ import annotations

import logging
import os

import kopf

from parallelrun.runner.api import ANNOTATION_PREFIX, FINALIZER, LABEL_MANAGED_BY, MANAGED_BY

from .jobs import handlers as jobs
from .kit.controller import Services, Wakeups
from .kit.creates import CreatesFirst
from .kit.kube import KubeApi
from .pipelines import handlers as pipelines
from .schedules import handlers as schedules

KINDS = (jobs, pipelines, schedules)  # each registers its handlers with kopf when imported
_WAKE_UP_HANDLERS = ("child_changed", "resource_changed", "step_child_changed", "pipeline_changed")


class _QuietWakeUps(logging.Filter):
    """Drops kopf's "Handler 'child_changed' succeeded." lines: one per pod event, they say nothing."""

    _MESSAGES = frozenset(f"Handler {name!r} succeeded." for name in _WAKE_UP_HANDLERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._MESSAGES


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    settings.posting.level = logging.WARNING  # Events: the controllers' own, plus kopf's warnings and errors
    # The API server sends only ours, not every pod and Job of the cluster.
    for children in ("pods", ("batch", "jobs")):  # of runs and of pipeline steps
        settings.watching.label_selectors[children] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietWakeUps) for f in objects.filters):
        objects.addFilter(_QuietWakeUps())
    memo.setdefault("connection", None)
    memo.services = Services(api=KubeApi(),
                             default_image=memo.get("default_image") or os.environ.get("PARALLELRUN_JOB_IMAGE"),
                             local_storage=bool(memo.get("local_storage")))
    memo.setdefault("wakeups", Wakeups())
    memo.setdefault("creates", CreatesFirst())  # the schedules' runs are created first; logged in by `login`


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_) -> None:
    await memo.creates.close()
    await memo.services.api.close()


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs) -> kopf.ConnectionInfo:
    """kopf's usual login (in-cluster, else kubeconfig), shared with the controllers' clients."""
    info = (memo.get("connection") or kopf.login_via_client(**kwargs)
            or kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs))
    if info is None:
        raise kopf.LoginError("no credentials: neither in a cluster nor a kubeconfig")
    await memo.services.api.connect(info)
    await memo.creates.connect(info)
    return info
