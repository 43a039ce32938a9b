"""A schedule loop's StatusWriter on the emulator: the latest status is persisted, a removed
field is removed, a refused patch is retried with the newest status, and creates go first."""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest
from operator_harness import NAMESPACE, eventually

from parallelrun.operator import schedule
from parallelrun.operator.kube import KubeApi, path
from parallelrun.operator.schedule import CreatesFirst, StatusWriter

pytestmark = pytest.mark.timeout(30)

API = "parallelrun.dev/v1alpha1"
T1, T2, T3 = "2026-01-05T06:01:00Z", "2026-01-05T06:02:00Z", "2026-01-05T06:03:00Z"


def stored(cluster) -> dict:
    return (cluster.get("pipelineschedules", "writer") or {}).get("status") or {}


@pytest.fixture
async def writer(cluster, kube, monkeypatch):
    """A StatusWriter running for a schedule, through a client the emulator's faults apply to."""
    monkeypatch.setattr(schedule, "RETRY_SECONDS", 0.05)
    await kube.create(path(API, "pipelineschedules", NAMESPACE), {
        "apiVersion": API, "kind": "PipelineSchedule", "metadata": {"name": "writer", "namespace": NAMESPACE},
        "spec": {"schedule": {"cron": "* * * * *"}, "template": {"spec": {"workdir": "/tmp/w/", "steps": []}}}})
    api = KubeApi()
    await api.connect(kopf.ConnectionInfo(server=str(cluster.url)))
    writer = StatusWriter(api, path(API, "pipelineschedules", NAMESPACE, "writer", "status"), {}, CreatesFirst(),
                          logging.getLogger(__name__))
    task = asyncio.create_task(writer.run())
    yield writer
    task.cancel()
    await api.close()


async def test_latest_status_written_after_a_refused_patch(cluster, writer):
    writer.want({"handledUntil": T1, "active": ["writer-202601050601"]})
    await eventually(lambda: stored(cluster) == {"handledUntil": T1, "active": ["writer-202601050601"]})
    fault = cluster.refuse("patch", "pipelineschedules/status", status=503, reason="ServiceUnavailable",
                           message="down")
    writer.want({"handledUntil": T2, "active": ["writer-202601050601"]})
    await eventually(lambda: fault.hits)
    assert stored(cluster)["handledUntil"] == T1  # the memory persisted did not move
    writer.want({"handledUntil": T3})  # newer, and `active` gone
    cluster.faults.clear()
    await eventually(lambda: stored(cluster) == {"handledUntil": T3})


async def test_status_waits_for_the_creates_under_way(cluster, writer):
    writer.creates.pending = 1  # a create under way
    writer.creates._idle.clear()
    writer.want({"handledUntil": T1})
    await asyncio.sleep(0.3)
    assert stored(cluster) == {}
    writer.creates.pending = 0
    writer.creates._idle.set()
    await eventually(lambda: stored(cluster) == {"handledUntil": T1})
