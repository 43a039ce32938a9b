"""The operator killed and restarted in each phase: it adopts what exists and loses no count."""

from __future__ import annotations

import threading

import pytest
from operator_harness import create, eventually, report, resource, status_of
from prometheus_client import REGISTRY

from parallelrun.operator.jobs import planning
from parallelrun.operator.kit import metrics

pytestmark = pytest.mark.timeout(60)


def phase(cluster, name: str):
    return status_of(cluster, name).get("phase")


async def test_created_while_the_operator_was_down(cluster, kube, operator, inputs):
    await create(kube, resource("early", inputs))
    async with operator():
        await eventually(lambda: phase(cluster, "early") == "Running")
    assert cluster.creations["jobs", "early-score"] == 1


async def test_restart_while_planning(cluster, kube, operator, inputs, monkeypatch):
    release, planned = threading.Event(), []
    real_plan_run = planning.plan_run

    def slow_plan_run(*args):
        release.wait(10)
        planned.append(args)
        return real_plan_run(*args)

    monkeypatch.setattr(planning, "plan_run", slow_plan_run)
    async with operator():
        await create(kube, resource("slow", inputs))
        await eventually(lambda: phase(cluster, "slow") == "Planning")
    assert not cluster.get("jobs", "slow-score")
    release.set()  # the first operator's planning thread finishes after it is gone
    async with operator():
        status = await eventually(lambda: phase(cluster, "slow") == "Running" and status_of(cluster, "slow"))
    assert status["progress"]["miniBatches"]["total"] == 10
    assert cluster.creations["jobs", "slow-score"] == 1 and cluster.creations["configmaps", "slow-spec"] == 1
    assert len(planned) == 2  # both planned; the plan is written once and then read back


async def test_restart_while_running_keeps_the_counts(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("steady", inputs))
        await eventually(lambda: phase(cluster, "steady") == "Running")
        await kubelet.run("steady-score", 0, 0, report(5))
        await eventually(lambda: status_of(cluster, "steady").get("progressText") == "5/10")
    # While the operator is down: shard 1 crashes once, then its retry finishes the shard.
    await kubelet.run("steady-score", 1, 137, report(2))
    await kubelet.run("steady-score", 1, 0, report(4, 1), attempt=1)
    async with operator():
        status = await eventually(lambda: phase(cluster, "steady") == "Merging" and status_of(cluster, "steady"))
    assert status["progress"]["miniBatches"] == {"total": 10, "succeeded": 9, "failed": 1}
    assert status["nodes"] == {"active": 0, "succeeded": 2, "failed": 0, "current": 2, "desired": 2}
    assert cluster.creations["jobs", "steady-score"] == 1 and cluster.creations["jobs", "steady-merge"] == 1


async def test_restart_while_merging(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("merger", inputs))
        await eventually(lambda: phase(cluster, "merger") == "Running")
        await kubelet.run("merger-score", 0, 0, report(5))
        await kubelet.run("merger-score", 1, 0, report(5))
        await eventually(lambda: phase(cluster, "merger") == "Merging")
    await kubelet.run("merger-merge", 0, 0, '{"status": "Succeeded"}')
    async with operator():
        status = await eventually(lambda: phase(cluster, "merger") == "Succeeded" and status_of(cluster, "merger"))
    assert status["progress"]["miniBatches"] == {"total": 10, "succeeded": 10, "failed": 0}
    assert cluster.creations["jobs", "merger-merge"] == 1 and cluster.creations["jobs", "merger-score"] == 1


async def test_restart_after_the_end_changes_nothing(cluster, kube, operator, inputs):
    async with operator():
        await create(kube, resource("over", inputs, nodeCount=0))
        status = await eventually(lambda: phase(cluster, "over") == "Failed" and status_of(cluster, "over"))
    await eventually(lambda: not cluster.get("batchinferencejobs", "over")["metadata"].get("finalizers"))
    writes = len(cluster.writes)
    metrics.JOBS.labels("Failed").set(0)
    async with operator() as memo:
        # Its event was handled, where a daemon of an unfinished resource would start: none does.
        await eventually(lambda: REGISTRY.get_sample_value("parallelrun_jobs", {"phase": "Failed"}) == 1)
        assert not memo.wakeups.ended
    assert status_of(cluster, "over") == status
    assert cluster.writes[writes:] == []
