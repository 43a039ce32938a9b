"""The operator's API calls: nothing that the Helm chart's RBAC does not grant, and
watches of its children filtered by the API server.

Its calls are recorded by the emulator (the tests' own are told apart by their token)
through a run to Succeeded with a storage Secret, a run stopped by a threshold, a
spec change refused, and a deletion, then a PipelineRun and a PipelineSchedule through
theirs; tests/chart checks that the chart grants rbac_needs and nothing more, so
together: what the operator does, the chart allows, and no more.
"""

from __future__ import annotations

import base64
import sys

import pytest
from operator_harness import BIJ_API, NAMESPACE, ROOT, create, eventually, report, resource, status_of

from parallelrun.operator.kit.kube import path
from parallelrun.runner.api import ANNOTATION_RUN_NOW as RUN_NOW
from parallelrun.runner.api import BATCH_INFERENCE_JOB

PLURAL = BATCH_INFERENCE_JOB.plural

sys.path.insert(0, str(ROOT / "tests" / "chart"))
from rbac_needs import ADOPTION_NEEDS, CLUSTER_NEEDS, NAMESPACED_NEEDS  # noqa: E402

pytestmark = pytest.mark.timeout(60)


MANAGED = "app.kubernetes.io/managed-by=parallelrun-operator"  # the children of runs and of pipeline steps


def phase(cluster, name: str) -> str | None:
    return status_of(cluster, name).get("phase")


async def test_every_call_of_the_operator_is_granted_by_the_chart(cluster, kube, kubelet, operator, inputs, tmp_path):
    await jobs_through_their_life(cluster, kube, kubelet, operator, inputs, tmp_path)
    calls = cluster.operator_calls
    assert {("batch", "jobs", "create"), ("batch", "jobs", "patch"), ("", "secrets", "get"),
            ("parallelrun.dev", "batchinferencejobs/status", "patch")} <= calls  # the scenario did its job
    assert sorted(calls - set(NAMESPACED_NEEDS) - set(CLUSTER_NEEDS)) == []


async def jobs_through_their_life(cluster, kube, kubelet, operator, inputs, tmp_path) -> None:
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "creds"}, "data": {"UNUSED": base64.b64encode(b"x").decode()}})
    async with operator():
        await create(kube, resource("good", inputs, storage={"secretRef": {"name": "creds"}}))
        await create(kube, resource("over", dict(inputs, output=str(tmp_path / "over") + "/"), errorThreshold=0))
        await eventually(lambda: phase(cluster, "good") == phase(cluster, "over") == "Running")
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "good"), {"spec": {"runMaxTry": 5}})  # refused
        await kubelet.run("over-score", 0, 0, report(4, 1))
        await kubelet.run("good-score", 0, 0, report(5))
        await kubelet.run("good-score", 1, 0, report(5))
        await eventually(lambda: phase(cluster, "good") == "Merging" and phase(cluster, "over") == "Failed")
        await kubelet.run("good-merge", 0, 0, '{"status": "Succeeded"}')
        await eventually(lambda: phase(cluster, "good") == "Succeeded")
        await kube.request("DELETE", path(BIJ_API, PLURAL, NAMESPACE, "good"))
        await eventually(lambda: cluster.get(PLURAL, "good") is None)


async def test_children_are_watched_by_their_label_only(cluster, kube, operator, inputs):
    """The API server filters the pods and Jobs the operator watches: a big cluster's other pods never reach it."""
    async with operator():
        await create(kube, resource("watched", inputs))
        await eventually(lambda: phase(cluster, "watched") == "Running")
    assert cluster.operator_selectors["pods"] == cluster.operator_selectors["jobs"] == MANAGED
    assert cluster.operator_selectors[PLURAL] is None


async def test_every_kind_asks_for_exactly_the_needs(cluster, kube, kubelet, operator, inputs, tmp_path):
    """Each kind through its life: the calls made are rbac_needs, no more and no fewer
    (a need no kind exercises would be a grant the chart gives for nothing)."""
    await jobs_through_their_life(cluster, kube, kubelet, operator, inputs, tmp_path)
    workdir = str(tmp_path / "work") + "/"
    steps = [{"name": "hello", "container": {"image": "busybox", "command": ["echo", "hello"]}}]
    run = {"apiVersion": BIJ_API, "kind": "PipelineRun", "metadata": {"name": "pipe", "namespace": NAMESPACE},
           "spec": {"workdir": workdir, "steps": [*steps, {"name": "score", "dependsOn": ["hello"], "batchInference": resource("s", inputs)["spec"]}]}}
    schedule = {"apiVersion": BIJ_API, "kind": "PipelineSchedule",
                "metadata": {"name": "sched", "namespace": NAMESPACE, "annotations": {RUN_NOW: "1"}},
                "spec": {"successfulRunsHistoryLimit": 0, "template": {"spec": {"workdir": workdir, "steps": steps}}}}
    async with operator():
        await kube.create(path(BIJ_API, "pipelineruns", NAMESPACE), run)
        await kube.create(path(BIJ_API, "pipelineschedules", NAMESPACE), schedule)
        await eventually(lambda: cluster.get("jobs", "pipe-hello"))
        await kubelet.job_condition("pipe-hello", "Complete", "Completed", succeeded=1)
        await eventually(lambda: cluster.get("batchinferencejobs", "pipe-score"))
        scheduled = await eventually(lambda: next((n for (r, _, n), o in cluster.objects.items()
                                                   if r.plural == "pipelineruns" and n.startswith("sched-")
                                                   and not o.deleted), None))
        await eventually(lambda: cluster.get("jobs", f"{scheduled}-hello"))
        await kubelet.job_condition(f"{scheduled}-hello", "Complete", "Completed", succeeded=1)
        await eventually(lambda: cluster.get("pipelineruns", scheduled) is None, timeout=20)  # pruned
    needs = set(NAMESPACED_NEEDS) | set(CLUSTER_NEEDS)
    assert sorted(cluster.operator_calls - needs) == []
    assert sorted(needs - cluster.operator_calls - set(ADOPTION_NEEDS)) == []
