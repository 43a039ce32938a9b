"""A BatchInferenceJob's life against the emulator, the tests playing Job controller and kubelet."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from operator_harness import BIJ_API, NAMESPACE, condition, create, eventually, report, resource, status_of, uid_of

from parallelrun.operator.jobs import reconcile
from parallelrun.operator.kit.controller import Controller
from parallelrun.operator.kit.kube import path
from parallelrun.runner.api import BATCH_INFERENCE_JOB

PLURAL = BATCH_INFERENCE_JOB.plural

pytestmark = pytest.mark.timeout(60)


def events(cluster, name: str) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for (res, _, _), obj in cluster.objects.items()
            if res.plural == "events" and not obj.deleted
            for e in [obj.raw] if e.get("involvedObject", {}).get("name") == name]


async def test_happy_path_to_succeeded(cluster, kube, kubelet, operator, inputs, schema):
    async with operator():
        await create(kube, resource("happy", inputs))
        job = await eventually(lambda: cluster.get("jobs", "happy-score"))
        status = await eventually(lambda: status_of(cluster, "happy").get("phase") == "Running"
                                  and status_of(cluster, "happy"))
        assert status["progress"]["miniBatches"] == {"total": 10, "succeeded": 0, "failed": 0}
        assert status["jobName"] == "happy-score" and status["runId"].startswith("happy-")
        assert condition(status, "Running")["status"] == "True"
        assert job["spec"]["completions"] == 2

        first = await kubelet.start("happy-score", 0)
        second = await kubelet.start("happy-score", 1)
        await eventually(lambda: status_of(cluster, "happy").get("nodes", {}).get("active") == 2)
        await kubelet.finish(first, 0, report(5, items_ok=5))
        await eventually(lambda: status_of(cluster, "happy").get("progressText") == "5/10")
        await kubelet.finish(second, 0, report(4, 1, 4, 1))

        status = await eventually(lambda: status_of(cluster, "happy").get("phase") == "Merging"
                                  and status_of(cluster, "happy"))
        assert status["mergeJobName"] == "happy-merge"
        merge = cluster.get("jobs", "happy-merge")
        assert merge["spec"]["template"]["spec"]["containers"][0]["command"][3] == "merge"
        await kubelet.run("happy-merge", 0, 0, '{"status": "Succeeded"}')

        status = await eventually(lambda: status_of(cluster, "happy").get("phase") == "Succeeded"
                                  and status_of(cluster, "happy"))
    assert status["outputUri"] == inputs["output"] + "parallel_run_step.txt"
    assert status["report"] == f"{inputs['output']}_parallelrun/{status['runId']}/report/report.html"
    assert status["progress"] == {"miniBatches": {"total": 10, "succeeded": 9, "failed": 1},
                                  "items": {"succeeded": 9, "failed": 1}}
    assert isinstance(status["itemsPerSecond"], float) and status["itemsPerSecond"] >= 0
    assert status["nodes"] == {"active": 0, "succeeded": 2, "failed": 0, "current": 2, "desired": 2}
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Running")["status"] == "False"
    assert status["completionTime"] and status["startTime"]
    assert status["observedGeneration"] == 1
    assert {("Normal", "Planning"), ("Normal", "Started"), ("Normal", "Merging"),
            ("Normal", "Succeeded")} <= set(events(cluster, "happy"))
    assert condition(status, "AllItemsFailed") == {} and ("Warning", "AllItemsFailed") not in events(cluster, "happy")
    assert cluster.creations["jobs", "happy-score"] == 1 and cluster.creations["jobs", "happy-merge"] == 1
    assert schema.validate(cluster.get(PLURAL, "happy")) == []


async def test_every_item_failed_succeeds_loudly(cluster, kube, kubelet, operator, inputs, schema):
    """errorThreshold -1 lets a run whose every item failed succeed (AML's rule), never silently:
    a condition AllItemsFailed and a Warning event say so; a run with any item scored has neither."""
    async with operator():
        await create(kube, resource("void", inputs, errorThreshold=-1, miniBatchErrorThreshold=-1,
                                    allowedFailedPercent=-1))
        await running(cluster, "void")
        await kubelet.run("void-score", 0, 0, report(0, 5))
        await kubelet.run("void-score", 1, 0, report(0, 5))
        await eventually(lambda: status_of(cluster, "void").get("phase") == "Merging")
        await kubelet.run("void-merge", 0, 0, '{"status": "Succeeded"}')
        status = await finished(cluster, "void")
    assert status["phase"] == "Succeeded" and condition(status, "Succeeded")["status"] == "True"
    warning = condition(status, "AllItemsFailed")
    assert warning["status"] == "True" and warning["reason"] == "AllItemsFailed"
    assert "every item failed (10 of 10)" in warning["message"] and "errors.jsonl" in warning["message"]
    assert ("Warning", "AllItemsFailed") in events(cluster, "void")
    assert schema.validate(cluster.get(PLURAL, "void")) == []


async def running(cluster, name: str) -> dict:
    """Wait until the resource is Running; its status."""
    return await eventually(lambda: status_of(cluster, name).get("phase") == "Running" and status_of(cluster, name))


async def finished(cluster, name: str) -> dict:
    return await eventually(lambda: status_of(cluster, name).get("phase") in ("Succeeded", "Failed")
                            and status_of(cluster, name))


async def test_threshold_exceeded_mid_run_stops_the_job(cluster, kube, kubelet, operator, inputs, schema):
    async with operator():
        await create(kube, resource("over", inputs, errorThreshold=2))
        await running(cluster, "over")
        busy = await kubelet.start("over-score", 1)
        await kubelet.run("over-score", 0, 0, report(2, 3, 2, 3))  # exit 0: only the sum exceeds
        status = await finished(cluster, "over")
        job = cluster.get("jobs", "over-score")
    assert status["phase"] == "Failed"
    failed = condition(status, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ErrorThresholdExceeded"
    assert "3 failed items exceed errorThreshold 2" in failed["message"]
    assert "mini-batches: 2 succeeded, 3 failed of 10; items: 2 succeeded, 3 failed" in status["message"]
    assert status["progress"]["items"] == {"succeeded": 2, "failed": 3}
    assert job["spec"]["suspend"] is True  # the pod of shard 1 is stopped with it
    assert busy and ("Warning", "ErrorThresholdExceeded") in events(cluster, "over")
    assert not cluster.get("jobs", "over-merge")
    assert schema.validate(cluster.get(PLURAL, "over")) == []


def publish_progress(inputs: dict, run_id: str, shard: int, counts: str) -> None:
    """What a running scoring pod's runner publishes every few seconds."""
    folder = Path(inputs["output"]) / "_parallelrun" / run_id / "progress"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{shard:05d}.json").write_text(counts)


async def test_progress_files_move_the_status_and_stop_an_exceeded_run(cluster, kube, kubelet, operator, inputs,
                                                                       monkeypatch):
    monkeypatch.setattr(reconcile, "PROGRESS_READ_SECONDS", 0.1)
    async with operator():
        await create(kube, resource("live", inputs, errorThreshold=2))
        run_id = (await running(cluster, "live"))["runId"]
        await kubelet.start("live-score", 0)
        await kubelet.start("live-score", 1)
        publish_progress(inputs, run_id, 0, report(3))
        await eventually(lambda: status_of(cluster, "live").get("progressText") == "3/10")  # while the pods run
        assert status_of(cluster, "live")["phase"] == "Running"
        publish_progress(inputs, run_id, 1, report(1, 3, 1, 3))
        status = await finished(cluster, "live")
    assert condition(status, "Failed")["reason"] == "ErrorThresholdExceeded"
    assert "3 failed items exceed errorThreshold 2" in status["message"]
    assert status["progress"]["miniBatches"] == {"total": 10, "succeeded": 4, "failed": 3}
    assert cluster.get("jobs", "live-score")["spec"]["suspend"] is True  # both pods stopped mid-shard


async def test_shard_exceeding_alone_fails_the_run(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("alone", inputs, miniBatchErrorThreshold=0))
        await running(cluster, "alone")
        await kubelet.run("alone-score", 1, 3, report(1, 1, reason="1 failed mini-batches exceed ..."))
        await kubelet.job_condition("alone-score", "Failed", "PodFailurePolicy")
        status = await finished(cluster, "alone")
    assert condition(status, "Failed")["reason"] == "ErrorThresholdExceeded"
    assert "1 failed mini-batches exceed miniBatchErrorThreshold 0" in status["message"]


async def test_crashed_pod_is_retried_and_counted_once(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("crash", inputs))
        await running(cluster, "crash")
        await kubelet.run("crash-score", 0, 137, report(2))  # killed after committing 2 mini-batches
        await eventually(lambda: status_of(cluster, "crash").get("progressText") == "2/10")
        status = status_of(cluster, "crash")
        assert status["phase"] == "Running" and status["nodes"]["failed"] == 0
        await kubelet.run("crash-score", 0, 1, "Traceback ... MemoryError", attempt=1)  # no report: a log tail
        retry = await kubelet.start("crash-score", 0, attempt=2)
        await eventually(lambda: status_of(cluster, "crash").get("nodes", {}).get("active") == 1)
        assert status_of(cluster, "crash")["progressText"] == "2/10"
        await kubelet.finish(retry, 0, report(5))  # the retry resumed: the shard's whole count
        await kubelet.run("crash-score", 1, 0, report(5))
        status = await eventually(lambda: status_of(cluster, "crash").get("phase") == "Merging"
                                  and status_of(cluster, "crash"))
    assert status["progress"]["miniBatches"] == {"total": 10, "succeeded": 10, "failed": 0}


async def test_retries_exhausted_fail_the_run(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("doomed", inputs, runMaxTry=1))
        await running(cluster, "doomed")
        assert cluster.get("jobs", "doomed-score")["spec"]["backoffLimitPerIndex"] == 0
        await kubelet.run("doomed-score", 1, 139, "Segmentation fault")
        await kubelet.job_condition("doomed-score", "Failed", "FailedIndexes", "Job has failed indexes",
                                    failedIndexes="1")
        status = await finished(cluster, "doomed")
    assert condition(status, "Failed")["reason"] == "RetriesExhausted"
    assert "shard 1 failed 1 time(s)" in status["message"] and "Segmentation fault" in status["message"]
    assert status["nodes"]["failed"] == 1


async def test_a_failed_job_seen_before_its_pod_waits_for_the_pods_word(cluster, kube, kubelet, operator, inputs):
    """The Job and its pods are watched apart: the Job's Failed condition may come first. The pod's
    report still decides the reason (here a segfault: RetriesExhausted), not the Job's condition."""
    async with operator():
        await create(kube, resource("late", inputs, runMaxTry=1))
        await running(cluster, "late")
        await kubelet.job_condition("late-score", "Failed", "FailedIndexes", "Job has failed indexes", failedIndexes="1")
        await kubelet.run("late-score", 1, 139, "Segmentation fault")
        status = await finished(cluster, "late")
    assert condition(status, "Failed")["reason"] == "RetriesExhausted"
    assert "Segmentation fault" in status["message"]


async def test_a_failed_job_without_a_failed_pod_fails_with_the_jobs_reason(cluster, kube, kubelet, operator, inputs,
                                                                            monkeypatch):
    monkeypatch.setattr(reconcile, "POD_REPORT_SECONDS", 0.3)
    async with operator():
        await create(kube, resource("deadline", inputs))
        await running(cluster, "deadline")
        await kubelet.job_condition("deadline-score", "Failed", "DeadlineExceeded", "Job was active longer than allowed")
        status = await finished(cluster, "deadline")
    assert condition(status, "Failed")["reason"] == "ScoringJobFailed"
    assert "DeadlineExceeded: Job was active longer than allowed" in status["message"]


async def test_user_code_that_cannot_load(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("broken", inputs))
        await running(cluster, "broken")
        await kubelet.run("broken-score", 0, 2, report(0, reason="user code cannot load: NameError: x"))
        status = await finished(cluster, "broken")
    assert condition(status, "Failed")["reason"] == "ConfigurationError"
    assert "user code cannot load: NameError: x" in status["message"]
    assert cluster.get("jobs", "broken-score")["spec"]["suspend"] is True


@pytest.mark.parametrize(("exit_code", "message", "wrote_report"), [
    (2, '{"reason": "cannot write az://out/: AuthorizationFailure"}', False),  # it wrote nothing
    (3, '{"status": "Failed", "reason": "3 failed items exceed errorThreshold 2"}', True),  # summary and page written
])
async def test_merge_failure(cluster, kube, kubelet, operator, inputs, exit_code, message, wrote_report):
    async with operator():
        await create(kube, resource("nomerge", inputs))
        await running(cluster, "nomerge")
        await kubelet.run("nomerge-score", 0, 0, report(5))
        await kubelet.run("nomerge-score", 1, 0, report(5))
        await eventually(lambda: cluster.get("jobs", "nomerge-merge"))
        await kubelet.run("nomerge-merge", 0, exit_code, message)
        status = await finished(cluster, "nomerge")
    assert condition(status, "Failed")["reason"] == "MergeFailed"
    assert json.loads(message)["reason"] in status["message"]
    assert "outputUri" not in status
    page = f"{inputs['output']}_parallelrun/{status['runId']}/report/report.html"
    assert status.get("report") == (page if wrote_report else None)


async def test_invalid_spec_fails_with_every_field(cluster, kube, operator, inputs):
    body = resource("invalid", inputs, miniBatchSize="1XB", nodeCount=0, input={"uri": inputs["input"]})
    async with operator() as memo:
        await create(kube, body)
        status = await finished(cluster, "invalid")
        await eventually(lambda: memo.wakeups.finished[uid_of(cluster, "invalid")])  # no retry loop: done
    failed = condition(status, "Failed")
    assert failed["reason"] == "InvalidSpec"
    for field in ("spec.input.type", "spec.nodeCount", "spec.miniBatchSize"):
        assert field in failed["message"]
    assert not cluster.get("jobs", "invalid-score") and not cluster.get("configmaps", "invalid-spec")
    assert status_of(cluster, "invalid") == status


async def test_spec_that_cannot_run_in_a_cluster(cluster, kube, operator, inputs):
    async with operator(default_image=None):
        await create(kube, resource("local", inputs, output={"uri": "out/"}))
        status = await finished(cluster, "local")
    assert condition(status, "Failed")["reason"] == "InvalidSpec"
    assert "spec.environment.image: required" in status["message"]
    assert "spec.output.uri: 'out/' is a relative path" in status["message"]


async def test_input_with_nothing_to_plan(cluster, kube, operator, inputs, tmp_path):
    (tmp_path / "empty").mkdir()
    async with operator():
        await create(kube, resource("empty", dict(inputs, input=str(tmp_path / "empty") + "/")))
        status = await finished(cluster, "empty")
    assert condition(status, "Failed")["reason"] == "PlanFailed"
    assert "no input files" in status["message"]


async def test_spec_change_after_start_is_refused(cluster, kube, kubelet, operator, inputs):
    async with operator():
        await create(kube, resource("fixed", inputs))
        await running(cluster, "fixed")
        configmap = cluster.get("configmaps", "fixed-spec")
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "fixed"), {"spec": {"runMaxTry": 5}})
        status = await eventually(lambda: condition(status_of(cluster, "fixed"), "SpecChangeRefused")
                                  and status_of(cluster, "fixed"))
        refused = condition(status, "SpecChangeRefused")
        assert refused["status"] == "True" and refused["observedGeneration"] == 2
        assert status["observedGeneration"] == 2 and status["phase"] == "Running"
        assert cluster.get("configmaps", "fixed-spec") == configmap
        assert cluster.get("jobs", "fixed-score")["spec"]["completions"] == 2
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "fixed"), {"spec": {"runMaxTry": 3}})
        await eventually(lambda: not condition(status_of(cluster, "fixed"), "SpecChangeRefused"))
        await kubelet.run("fixed-score", 0, 0, report(5))
        await kubelet.run("fixed-score", 1, 0, report(5))
        await eventually(lambda: status_of(cluster, "fixed").get("phase") == "Merging")


async def test_spec_change_after_finish_is_refused(cluster, kube, operator, inputs):
    async with operator():
        await create(kube, resource("done", inputs, nodeCount=0))
        await finished(cluster, "done")
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "done"), {"spec": {"nodeCount": 1}})
        status = await eventually(lambda: condition(status_of(cluster, "done"), "SpecChangeRefused")
                                  and status_of(cluster, "done"))
    assert status["phase"] == "Failed" and status["observedGeneration"] == 2
    assert "the run is Failed; a changed spec is not run again" in condition(status, "SpecChangeRefused")["message"]
    assert not cluster.get("jobs", "done-score")


async def test_waits_for_the_storage_secret(cluster, kube, operator, inputs, monkeypatch):
    monkeypatch.setattr(Controller, "retry_seconds", 0.2)
    async with operator():
        await create(kube, resource("secret", inputs, storage={"secretRef": {"name": "creds"}}))
        status = await eventually(lambda: status_of(cluster, "secret").get("phase") == "Pending"
                                  and status_of(cluster, "secret"))
        assert condition(status, "Running") == condition(status, "Running") | {
            "status": "False", "reason": "WaitingForSecret"}
        await kube.create(path("v1", "secrets", NAMESPACE), {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "data": {"AZURE_STORAGE_CONNECTION_STRING": base64.b64encode(b"UseDevelopmentStorage=true").decode()}})
        await running(cluster, "secret")
    env_from = cluster.get("jobs", "secret-score")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"secretRef": {"name": "creds"}}]
    assert "UseDevelopmentStorage" not in json.dumps(status_of(cluster, "secret"))


async def test_deletion_stops_the_run(cluster, kube, operator, inputs):
    async with operator() as memo:
        await create(kube, resource("gone", inputs))
        await running(cluster, "gone")
        body = cluster.get(PLURAL, "gone")
        assert body["metadata"]["finalizers"] == ["parallelrun.dev/operator"]
        await kube.request("DELETE", path(BIJ_API, PLURAL, NAMESPACE, "gone"))
        await eventually(lambda: cluster.get(PLURAL, "gone") is None)  # the finalizer was released
        writes = len(cluster.writes)
        await eventually(lambda: memo.wakeups.ended[body["metadata"]["uid"]])  # its controller stopped
        assert cluster.writes[writes:] == []
    for plural, name in (("jobs", "gone-score"), ("configmaps", "gone-spec")):
        owners = cluster.get(plural, name)["metadata"]["ownerReferences"]
        assert owners == [{"apiVersion": BIJ_API, "kind": "BatchInferenceJob", "name": "gone",
                           "uid": body["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]


async def test_a_change_of_node_count_scales_the_running_scoring_job(cluster, kube, kubelet, operator, inputs):
    """Elastic nodeCount: completions and parallelism patched together; the new index's pod is
    judged with the others; any other change of the spec is still refused."""
    async with operator():
        await create(kube, resource("elastic", inputs))
        await eventually(lambda: status_of(cluster, "elastic").get("phase") == "Running")
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "elastic"), {"spec": {"nodeCount": 3}})
        job = await eventually(lambda: cluster.get("jobs", "elastic-score")["spec"]["completions"] == 3
                               and cluster.get("jobs", "elastic-score"))
        assert job["spec"]["parallelism"] == 3
        status = await eventually(lambda: status_of(cluster, "elastic").get("nodes", {}).get("current") == 3
                                  and status_of(cluster, "elastic"))
        assert status["nodes"]["desired"] == 3 and condition(status, "SpecChangeRefused") == {}
        for index in range(3):
            await kubelet.run("elastic-score", index, 0, report(4 if index < 2 else 2, items_ok=4 if index < 2 else 2))
        await eventually(lambda: status_of(cluster, "elastic").get("phase") == "Merging")
        assert status_of(cluster, "elastic")["progress"]["miniBatches"]["succeeded"] == 10

        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "elastic"), {"spec": {"nodeCount": 1, "runMaxTry": 5}})
        await eventually(lambda: condition(status_of(cluster, "elastic"), "SpecChangeRefused").get("status") == "True")
    assert cluster.get("jobs", "elastic-score")["spec"]["completions"] == 3
