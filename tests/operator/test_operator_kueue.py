"""spec.queueName and spec.priorityClassName against the emulator, a test playing Kueue: it
admits a Job by unsuspending it; the operator never does."""

from __future__ import annotations

import pytest
from operator_harness import NAMESPACE, condition, create, eventually, report, resource, status_of
from prometheus_client import REGISTRY

from parallelrun.operator.kit.kube import path
from parallelrun.runner.api import LABEL_KUEUE_QUEUE

pytestmark = pytest.mark.timeout(60)


def _queue_waits() -> float:
    return REGISTRY.get_sample_value("parallelrun_queue_duration_seconds_count") or 0.0


async def admit(kube, job: str) -> None:
    """What Kueue does once the Job's workload fits its ClusterQueue's quota."""
    await kube.merge_patch(path("batch/v1", "jobs", NAMESPACE, job), {"spec": {"suspend": False}})


async def test_jobs_wait_suspended_in_their_queue_until_kueue_admits_them(cluster, kube, kubelet, operator, inputs):
    body = resource("queued", inputs, queueName="gpu-queue", priorityClassName="batch-low")
    async with operator():
        await create(kube, body)
        status = await eventually(lambda: status_of(cluster, "queued").get("phase") == "Queued"
                                  and status_of(cluster, "queued"))
        score = await eventually(lambda: cluster.get("jobs", "queued-score"))
        assert score["spec"]["suspend"] is True
        assert score["metadata"]["labels"][LABEL_KUEUE_QUEUE] == "gpu-queue"
        assert score["spec"]["template"]["spec"]["priorityClassName"] == "batch-low"
        queued = await eventually(lambda: condition(status_of(cluster, "queued"), "Queued").get("status") == "True"
                                  and condition(status_of(cluster, "queued"), "Queued"))
        assert queued["reason"] == "WaitingForAdmission" and "gpu-queue" in queued["message"]
        assert cluster.get("jobs", "queued-score")["spec"]["suspend"] is True  # the operator left it to Kueue

        waits = _queue_waits()
        await admit(kube, "queued-score")
        status = await eventually(lambda: status_of(cluster, "queued").get("phase") == "Running"
                                  and status_of(cluster, "queued"))
        assert condition(status, "Queued")["status"] == "False"
        assert _queue_waits() == waits + 1  # parallelrun_queue_duration_seconds saw the wait
        for index in range(2):
            await kubelet.run("queued-score", index, 0, report(5, items_ok=5))

        merge = await eventually(lambda: cluster.get("jobs", "queued-merge"))
        assert merge["spec"]["suspend"] is True and merge["metadata"]["labels"][LABEL_KUEUE_QUEUE] == "gpu-queue"
        await eventually(lambda: condition(status_of(cluster, "queued"), "Queued").get("status") == "True")
        assert status_of(cluster, "queued")["phase"] == "Merging"
        await admit(kube, "queued-merge")
        await eventually(lambda: condition(status_of(cluster, "queued"), "Queued").get("status") == "False")
        await kubelet.run("queued-merge", 0, 0, '{"status": "Succeeded"}')
        status = await eventually(lambda: status_of(cluster, "queued").get("phase") == "Succeeded"
                                  and status_of(cluster, "queued"))
    assert condition(status, "Succeeded")["status"] == "True"


async def test_without_a_queue_jobs_are_not_suspended(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("plain", inputs))
        await eventually(lambda: status_of(cluster, "plain").get("phase") == "Running")
        score = cluster.get("jobs", "plain-score")
    assert "suspend" not in score["spec"] and LABEL_KUEUE_QUEUE not in score["metadata"]["labels"]
    assert "priorityClassName" not in score["spec"]["template"]["spec"]


async def test_a_pipeline_runs_steps_in_its_queue_and_priority(cluster, kube, kubelet, operator, inputs, tmp_path):
    """A PipelineRun's queueName and priorityClassName reach every step: its container Job waits
    suspended in the queue (the step says so) until Kueue admits it; its batchInference step's
    BatchInferenceJob inherits them, unless the step names its own."""
    prun = "pipelineruns"
    score = {"input": {"uri": inputs["input"], "type": "files"}, "code": {"entryScript": "score.py"},
             "output": {"uri": str(tmp_path / "out")}, "miniBatchSize": 1, "nodeCount": 2}
    own = dict(score, output={"uri": str(tmp_path / "own")}, queueName="own-queue")
    body = {"apiVersion": resource("x", inputs)["apiVersion"], "kind": "PipelineRun",
            "metadata": {"name": "daily", "namespace": NAMESPACE},
            "spec": {"workdir": str(tmp_path / "work"), "queueName": "team-queue", "priorityClassName": "batch-low",
                     "steps": [{"name": "prepare", "container": {"image": "example.com/tools:1", "command": ["true"]}},
                               {"name": "score", "dependsOn": ["prepare"], "batchInference": score},
                               {"name": "own", "dependsOn": ["prepare"], "batchInference": own}]}}

    def step(name: str) -> dict:
        return ((cluster.get(prun, "daily") or {}).get("status") or {}).get("steps", {}).get(name) or {}

    async with operator():
        await kube.create(path(body["apiVersion"], prun, NAMESPACE), body)
        prepare = await eventually(lambda: cluster.get("jobs", "daily-prepare"))
        assert prepare["spec"]["suspend"] is True
        assert prepare["metadata"]["labels"][LABEL_KUEUE_QUEUE] == "team-queue"
        assert prepare["spec"]["template"]["spec"]["priorityClassName"] == "batch-low"
        waiting = await eventually(lambda: "Kueue" in step("prepare").get("message", "") and step("prepare"))
        assert waiting["phase"] == "Running" and "team-queue" in waiting["message"]

        await admit(kube, "daily-prepare")
        await eventually(lambda: step("prepare").get("phase") == "Running" and "message" not in step("prepare"))
        assert cluster.get("batchinferencejobs", "daily-score") is None  # prepare has not finished
        await kubelet.job_condition("daily-prepare", "Complete", "Completed", succeeded=1)

        inherited = await eventually(lambda: cluster.get("batchinferencejobs", "daily-score"))
        named = await eventually(lambda: cluster.get("batchinferencejobs", "daily-own"))
        assert (inherited["spec"]["queueName"], inherited["spec"]["priorityClassName"]) == ("team-queue", "batch-low")
        assert (named["spec"]["queueName"], named["spec"]["priorityClassName"]) == ("own-queue", "batch-low")
        scoring = await eventually(lambda: cluster.get("jobs", "daily-score-score"))
        assert scoring["spec"]["suspend"] is True and scoring["metadata"]["labels"][LABEL_KUEUE_QUEUE] == "team-queue"
        queued = await eventually(lambda: "Kueue" in step("score").get("message", "") and step("score"))
        assert queued["phase"] == "Running"
    assert cluster.get("jobs", "daily-score-score")["spec"]["suspend"] is True  # the operator left it to Kueue
