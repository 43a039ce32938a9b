"""A PipelineRun's life against the emulator, the tests playing Job controller and kubelet."""

from __future__ import annotations

import base64
import json
import sys

import pytest
from operator_harness import BIJ_API, NAMESPACE, ROOT, condition, eventually, report

from parallelrun.operator.kit.controller import Controller
from parallelrun.operator.kit.kube import path
from parallelrun.operator.kit.pods import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT
from parallelrun.operator.pipelines import reconcile as pipeline_reconcile
from parallelrun.runner.api import PIPELINE_RUN

PLURAL = PIPELINE_RUN.plural

sys.path.insert(0, str(ROOT / "tests" / "chart"))
from rbac_needs import CLUSTER_NEEDS, NAMESPACED_NEEDS  # noqa: E402

pytestmark = pytest.mark.timeout(90)


def pipeline(name: str, workdir: str, steps: list[dict], final: list[dict] | None = None, **spec) -> dict:
    body = {"apiVersion": BIJ_API, "kind": "PipelineRun", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"workdir": workdir, "steps": steps, **spec}}
    if final:
        body["spec"]["finally"] = final
    return body


def container(name: str, *command: str, **step) -> dict:
    """A container step; with no command, `echo <name>` (steps that differ, so none reuses another)."""
    return {"name": name, "container": {"image": "example.com/tools:1", "command": list(command) or ["echo", name]},
            **step}


async def create_run(kube, body: dict) -> dict:
    return await kube.create(path(BIJ_API, PLURAL, NAMESPACE), body)


def run_status(cluster, name: str) -> dict:
    return (cluster.get(PLURAL, name) or {}).get("status") or {}


def step(cluster, run: str, name: str) -> dict:
    return (run_status(cluster, run).get("steps") or {}).get(name) or {}


async def finished(cluster, name: str) -> dict:
    return await eventually(lambda: run_status(cluster, name).get("phase") in ("Succeeded", "Failed")
                            and run_status(cluster, name), timeout=20)


async def complete(kubelet, job: str) -> None:
    await kubelet.job_condition(job, "Complete", "Completed", succeeded=1)


async def fail(kubelet, job: str) -> None:
    await kubelet.job_condition(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")


def events(cluster, name: str) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for (res, _, _), obj in cluster.objects.items()
            if res.plural == "events" and not obj.deleted
            for e in [obj.raw] if e.get("involvedObject", {}).get("name") == name]


async def posted(cluster, name: str, *expected: tuple[str, str]) -> None:
    """Wait until the operator posted these Events (kopf posts them in the background)."""
    await eventually(lambda: set(expected) <= set(events(cluster, name)))


def pipeline_jobs(cluster) -> list[str]:
    return sorted(name for (plural, name), count in cluster.creations.items() if plural == "jobs" and count)


async def score_to_the_end(cluster, kubelet, name: str) -> None:
    """Play a BatchInferenceJob of 10 mini-batches on two nodes to Succeeded."""
    await eventually(lambda: cluster.get("jobs", f"{name}-score"))
    await kubelet.run(f"{name}-score", 0, 0, report(5))
    await kubelet.run(f"{name}-score", 1, 0, report(5))
    await eventually(lambda: cluster.get("jobs", f"{name}-merge"))
    await kubelet.run(f"{name}-merge", 0, 0, '{"status": "Succeeded"}')


async def test_three_steps_run_in_order_and_pass_outputs(cluster, kube, kubelet, operator, inputs, tmp_path, schema):
    workdir = str(tmp_path / "work")
    score = {"name": "score", "dependsOn": ["prepare"], "batchInference": {
        "input": {"uri": inputs["input"], "type": "files"}, "code": {"entryScript": "score.py"},
        "output": {"uri": "${{run.workdir}}/score/", "fileName": "scores_${{parameters.day}}.txt"},
        "miniBatchSize": 1, "nodeCount": 2}}
    body = pipeline("iris", workdir, [
        container("prepare", "python", "prepare.py", "--day", "${{parameters.day}}"),
        score,
        container("publish", "python", "publish.py", "${{steps.score.outputs.outputFile}}", retries=2),
    ], parameters={"day": {"type": "string", "default": "2026-01-31"}}, storage={"secretRef": {"name": "creds"}})
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "creds"}, "data": {"UNUSED": base64.b64encode(b"x").decode()}})
    async with operator():
        run = await create_run(kube, body)
        prepare = await eventually(lambda: cluster.get("jobs", "iris-prepare"))
        status = await eventually(lambda: step(cluster, "iris", "prepare").get("phase") == "Running"
                                  and run_status(cluster, "iris"))
        assert status["phase"] == "Running" and status["currentStep"] == "prepare"
        assert status["progressText"] == "0/3" and status["parameters"] == {"day": "2026-01-31"}
        assert cluster.get("batchinferencejobs", "iris-score") is None  # waits for prepare
        await complete(kubelet, "iris-prepare")

        bij = await eventually(lambda: cluster.get("batchinferencejobs", "iris-score"))
        assert bij["spec"]["output"]["uri"] == f"{workdir}/iris/score/"
        assert bij["spec"]["output"]["fileName"] == "scores_2026-01-31.txt"
        assert bij["spec"]["storage"] == {"secretRef": {"name": "creds"}}  # the run's, by default
        await eventually(lambda: cluster.get("jobs", "iris-score-score"))
        await kubelet.run("iris-score-score", 0, 0, report(4, 1, items_ok=4, items_failed=1))
        scoring = await eventually(lambda: step(cluster, "iris", "score").get("failedItems") == 1
                                   and step(cluster, "iris", "score"))
        assert scoring["phase"] == "Running" and scoring["progress"] == "5/10 mini-batches, 1 failed item"
        await kubelet.run("iris-score-score", 1, 0, report(5))
        await eventually(lambda: cluster.get("jobs", "iris-score-merge"))
        await kubelet.run("iris-score-merge", 0, 0, '{"status": "Succeeded"}')

        publish = await eventually(lambda: cluster.get("jobs", "iris-publish"))
        await complete(kubelet, "iris-publish")
        status = await finished(cluster, "iris")
        await posted(cluster, "iris", ("Normal", "StepStarted"), ("Normal", "StepSucceeded"), ("Normal", "Succeeded"))

    assert status["phase"] == "Succeeded", status
    assert status["progressText"] == "3/3" and status["stepsDone"] == status["stepsTotal"] == 3
    assert condition(status, "Succeeded")["status"] == "True" and condition(status, "Running")["status"] == "False"
    output_file = f"{workdir}/iris/score/scores_2026-01-31.txt"
    assert status["steps"]["score"]["outputs"] == {"output": f"{workdir}/iris/score/", "outputFile": output_file}
    assert all(status["steps"][s]["phase"] == "Succeeded" and status["steps"][s]["reused"] is False
               and status["steps"][s]["completionTime"] for s in ("prepare", "score", "publish"))
    assert status["steps"]["prepare"]["child"] == "iris-prepare"
    assert status["steps"]["score"]["progress"] == "10/10 mini-batches, 1 failed item"
    assert "progress" not in status["steps"]["prepare"]
    assert schema.validate(cluster.get(PLURAL, "iris")) == []

    pod = publish["spec"]["template"]["spec"]
    runner = pod["containers"][0]
    assert runner["command"] == ["python", "publish.py", output_file]
    assert runner["image"] == "example.com/tools:1"
    assert publish["spec"]["backoffLimit"] == 2 and prepare["spec"]["backoffLimit"] == 0
    assert publish["spec"]["podFailurePolicy"] == {"rules": [  # the user's exit codes are the user's
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    assert pod["securityContext"] == POD_SECURITY_CONTEXT and runner["securityContext"] == CONTAINER_SECURITY_CONTEXT
    assert runner["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    for child in (prepare, publish, bij):
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": BIJ_API, "kind": "PipelineRun", "name": "iris", "uid": run["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
    assert cluster.creations["jobs", "iris-prepare"] == cluster.creations["jobs", "iris-publish"] == 1
    assert cluster.creations["batchinferencejobs", "iris-score"] == 1


async def test_a_failed_step_job_seen_before_its_pod_still_says_why(cluster, kube, kubelet, operator, tmp_path):
    """The Job and its pods are watched apart: its Failed condition may come first; the step's
    message still has its pod's exit code and last lines."""
    async with operator():
        await create_run(kube, pipeline("late", str(tmp_path), [container("only", "false")]))
        await eventually(lambda: cluster.get("jobs", "late-only"))
        await fail(kubelet, "late-only")
        await kubelet.run("late-only", 0, 1, "Traceback (most recent call last):\nValueError: boom")
        status = await finished(cluster, "late")
    assert status["steps"]["only"]["phase"] == "Failed"
    assert "exit code 1" in status["steps"]["only"]["message"] and "ValueError: boom" in status["steps"]["only"]["message"]


async def test_failed_middle_step_skips_its_dependants_and_runs_finally(cluster, kube, kubelet, operator, tmp_path,
                                                                       schema):
    body = pipeline("broken", str(tmp_path), [
        container("first"),
        container("middle", "false", dependsOn=["first"]),
        container("last", dependsOn=["middle"]),
        container("aside"),
    ], final=[container("notify", "sh", "-c", "echo run ${{run.status}}")])
    async with operator():
        await create_run(kube, body)
        await eventually(lambda: cluster.get("jobs", "broken-first") and cluster.get("jobs", "broken-aside"))
        await complete(kubelet, "broken-first")
        await eventually(lambda: cluster.get("jobs", "broken-middle"))
        await kubelet.run("broken-middle", 0, 1, "Traceback (most recent call last):\nValueError: boom")
        await fail(kubelet, "broken-middle")
        await eventually(lambda: step(cluster, "broken", "last").get("phase") == "Skipped")
        assert cluster.get("jobs", "broken-notify") is None  # aside still runs
        assert run_status(cluster, "broken")["phase"] == "Running"
        await complete(kubelet, "broken-aside")
        notify = await eventually(lambda: cluster.get("jobs", "broken-notify"))
        assert notify["spec"]["template"]["spec"]["containers"][0]["command"] == ["sh", "-c", "echo run Failed"]
        await complete(kubelet, "broken-notify")
        status = await finished(cluster, "broken")
        await posted(cluster, "broken", ("Warning", "StepFailed"), ("Normal", "StepSkipped"), ("Warning", "Failed"))

    assert status["phase"] == "Failed"
    assert status["steps"]["middle"]["phase"] == "Failed"
    assert status["steps"]["middle"]["message"] == (
        "Job broken-middle failed (BackoffLimitExceeded: Job has reached the specified backoff limit); "
        "pod broken-middle-0-0 ended with exit code 1 (Error): Traceback (most recent call last):\nValueError: boom")
    assert status["steps"]["last"] == {"phase": "Skipped", "message": "skipped: it needs middle, which did not succeed"}
    assert status["steps"]["notify"]["phase"] == "Succeeded"
    failed = condition(status, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "StepFailed"
    assert failed["message"].startswith("step middle failed: Job broken-middle failed (BackoffLimitExceeded")
    assert condition(status, "Stalled")["status"] == "True"
    assert "broken-last" not in pipeline_jobs(cluster)
    assert schema.validate(cluster.get(PLURAL, "broken")) == []


async def test_restart_in_each_state_never_doubles_a_child(cluster, kube, kubelet, operator, tmp_path):
    body = pipeline("again", str(tmp_path), [container("a"), container("b", dependsOn=["a"]),
                                             container("c", dependsOn=["b"])])
    async with operator():  # stopped while a runs
        await create_run(kube, body)
        await eventually(lambda: step(cluster, "again", "a").get("phase") == "Running")
    async with operator():  # a succeeded while the operator was away
        await complete(kubelet, "again-a")
        await eventually(lambda: step(cluster, "again", "b").get("phase") == "Running")
    await complete(kubelet, "again-b")  # finished with no operator: c is made after the restart
    async with operator():
        await eventually(lambda: cluster.get("jobs", "again-c"))
    async with operator():  # and restarted once more with c running
        await eventually(lambda: step(cluster, "again", "c").get("phase") == "Running")
        await complete(kubelet, "again-c")
        status = await finished(cluster, "again")
    assert status["phase"] == "Succeeded"
    assert [cluster.creations["jobs", f"again-{s}"] for s in "abc"] == [1, 1, 1]


async def test_child_made_before_the_status_said_so_is_not_made_again(cluster, kube, kubelet, operator, tmp_path):
    """A child made, then the status write failed: the retried daemon finds the child, never makes a second."""
    body = pipeline("adopt", str(tmp_path), [container("a")])
    cluster.refuse("patch", f"{PLURAL}/status", "adopt", status=503, reason="ServiceUnavailable", message="busy",
                   retry_after=1, times=1)
    async with operator():
        await create_run(kube, body)
        await eventually(lambda: step(cluster, "adopt", "a").get("phase") == "Running", timeout=15)
        await complete(kubelet, "adopt-a")
        status = await finished(cluster, "adopt")
    assert status["phase"] == "Succeeded" and cluster.creations["jobs", "adopt-a"] == 1


async def test_second_run_reuses_the_first_runs_step(cluster, kube, kubelet, operator, tmp_path):
    workdir = tmp_path / "work"
    steps = [container("train", "python", "train.py", "--iter", "${{parameters.iter}}"),
             container("report", dependsOn=["train"], reuse=False)]
    params = {"iter": {"type": "integer", "default": 5}}
    async with operator():
        await create_run(kube, pipeline("first", str(workdir), steps, parameters=params))
        await eventually(lambda: cluster.get("jobs", "first-train"))
        await complete(kubelet, "first-train")
        await eventually(lambda: cluster.get("jobs", "first-report"))
        await complete(kubelet, "first-report")
        assert (await finished(cluster, "first"))["phase"] == "Succeeded"
        [entry] = (workdir / "_parallelrun" / "cache").glob("*.json")
        assert json.loads(entry.read_text())["step"] == "train"

        await create_run(kube, pipeline("second", str(workdir), steps, parameters=params))
        await eventually(lambda: cluster.get("jobs", "second-report"))
        await complete(kubelet, "second-report")
        second = await finished(cluster, "second")
        await posted(cluster, "second", ("Normal", "StepReused"))

        changed = dict(params, iter={"type": "integer", "default": 6})
        await create_run(kube, pipeline("third", str(workdir), steps, parameters=changed))
        await eventually(lambda: cluster.get("jobs", "third-train"))
    assert second["phase"] == "Succeeded"
    assert second["steps"]["train"]["reused"] is True and "child" not in second["steps"]["train"]
    assert second["startTime"] and second["completionTime"]
    assert second["steps"]["train"]["message"] == "reused the outputs of step train of run first"
    assert second["steps"]["report"]["reused"] is False  # reuse: false
    assert "second-train" not in pipeline_jobs(cluster)


async def test_invalid_spec_fails_with_every_problem_and_no_child(cluster, kube, operator, tmp_path, schema):
    body = pipeline("wrong", str(tmp_path), [
        container("a", "echo", "${{parameters.missing}}"),
        container("b", dependsOn=["nowhere"]),
    ])
    async with operator():
        await create_run(kube, body)
        status = await finished(cluster, "wrong")
        await posted(cluster, "wrong", ("Warning", "InvalidSpec"))
    assert status["phase"] == "Failed"
    failed = condition(status, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.steps[0].container.command[1]: ${{parameters.missing}} names no parameter" in failed["message"]
    assert "spec.steps[1].dependsOn[0]: 'nowhere' names no step" in failed["message"]
    assert pipeline_jobs(cluster) == []
    assert schema.validate(cluster.get(PLURAL, "wrong")) == []


async def test_deleting_the_run_stops_it(cluster, kube, kubelet, operator, tmp_path):
    """Its children go with it by their owner references (the API server's garbage collector); the
    operator makes no more."""
    body = pipeline("gone", str(tmp_path), [container("a"), container("b", dependsOn=["a"])])
    async with operator():
        run = await create_run(kube, body)
        job = await eventually(lambda: cluster.get("jobs", "gone-a"))
        assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
        await kube.request("DELETE", path(BIJ_API, PLURAL, NAMESPACE, "gone"))
        await eventually(lambda: cluster.get(PLURAL, "gone") is None)
        await complete(kubelet, "gone-a")
        await eventually(lambda: cluster.get("jobs", "gone-a")["status"].get("conditions"))
    assert cluster.get("jobs", "gone-b") is None


COMPONENT = """
kind: Component
name: train_iris
version: "1.2"
environment: {image: example.com/trainer:1.2}
inputs: {max_iter: {type: integer, default: 500}}
outputs: {model: {type: uri_folder}}
command: python train.py --max-iter ${{inputs.max_iter}} --out ${{outputs.model}}
"""


async def test_component_step_runs_the_step_runner_in_its_image(cluster, kube, kubelet, operator, tmp_path):
    await kube.create(path("v1", "configmaps", NAMESPACE), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "train-iris"}, "data": {"component.yaml": COMPONENT}})
    body = pipeline("retrain", str(tmp_path), [
        {"name": "train", "component": {"configMap": "train-iris"}, "inputs": {"max_iter": "${{parameters.iter}}"}},
        container("use", "echo", "${{steps.train.outputs.model}}"),
    ], parameters={"iter": {"type": "integer", "default": 7}}, storage={"secretRef": {"name": "creds"}})
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "creds"}, "data": {}})
    async with operator():
        await create_run(kube, body)
        job = await eventually(lambda: cluster.get("jobs", "retrain-train"))
        configmap = cluster.get("configmaps", "retrain-train-step")
        await complete(kubelet, "retrain-train")
        use = await eventually(lambda: cluster.get("jobs", "retrain-use"))
        await complete(kubelet, "retrain-use")
        status = await finished(cluster, "retrain")
    model = f"{tmp_path}/retrain/train/model/"
    assert status["phase"] == "Succeeded" and status["steps"]["train"]["outputs"] == {"model": model}
    assert use["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", model]
    assert configmap["immutable"] is True
    resolved = json.loads(configmap["data"]["step.json"])
    assert (resolved["kind"], resolved["inputs"], resolved["outputs"]) == ("component", {"max_iter": 7}, {"model": model})
    pod = job["spec"]["template"]["spec"]
    runner = pod["containers"][0]
    assert runner["image"] == "example.com/trainer:1.2"
    assert runner["command"] == ["python", "-m", "parallelrun.runner", "step", "--step", "/etc/parallelrun/step.json"]
    assert {"name": "step", "configMap": {"name": "retrain-train-step"}} in pod["volumes"]
    assert job["spec"]["podFailurePolicy"]["rules"][0] == {"action": "FailJob", "onExitCodes": {
        "containerName": "runner", "operator": "In", "values": [2]}}  # the step runner's EXIT_CONFIG
    assert runner["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert pod["securityContext"] == POD_SECURITY_CONTEXT and runner["securityContext"] == CONTAINER_SECURITY_CONTEXT
    calls = cluster.operator_calls  # and the chart's RBAC grants every call the pipeline made
    assert {("", "configmaps", "get"), ("", "configmaps", "create"), ("batch", "jobs", "create"),
            ("parallelrun.dev", "pipelineruns/status", "patch")} <= calls
    assert sorted(calls - set(NAMESPACED_NEEDS) - set(CLUSTER_NEEDS)) == []


async def test_component_that_is_not_there_is_a_spec_error(cluster, kube, operator, tmp_path):
    body = pipeline("nocomp", str(tmp_path), [{"name": "train", "component": {"configMap": "absent"}}])
    async with operator():
        await create_run(kube, body)
        status = await finished(cluster, "nocomp")
    assert condition(status, "Failed")["reason"] == "InvalidSpec"
    assert "ConfigMap absent does not exist in namespace ns" in status["message"]


async def test_spec_change_after_start_is_refused(cluster, kube, kubelet, operator, tmp_path, schema):
    body = pipeline("edited", str(tmp_path), [container("a"), container("b", dependsOn=["a"])])
    async with operator():
        await create_run(kube, body)
        await eventually(lambda: cluster.get("jobs", "edited-a"))
        assert cluster.get("configmaps", "edited-spec")["immutable"] is True
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "edited"), {"spec": {"steps": [
            container("a"), container("b", "echo", "changed", dependsOn=["a"]), container("c")]}})
        refused = await eventually(lambda: condition(run_status(cluster, "edited"), "SpecChangeRefused"))
        await complete(kubelet, "edited-a")
        b = await eventually(lambda: cluster.get("jobs", "edited-b"))
    async with operator():  # a restart goes on with the spec the run started with
        await complete(kubelet, "edited-b")
        status = await finished(cluster, "edited")
        await kube.merge_patch(path(BIJ_API, PLURAL, NAMESPACE, "edited"), {"spec": {"workdir": "/elsewhere"}})
        await eventually(lambda: "Succeeded; a changed spec is not run again" in condition(
            run_status(cluster, "edited"), "SpecChangeRefused").get("message", ""))
        await posted(cluster, "edited", ("Warning", "SpecChangeRefused"))
    assert refused["status"] == "True" and "create a new PipelineRun" in refused["message"]
    assert b["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "b"]
    assert status["phase"] == "Succeeded" and set(status["steps"]) == {"a", "b"}
    assert cluster.get("jobs", "edited-c") is None
    assert schema.validate(cluster.get(PLURAL, "edited")) == []


async def test_reuse_index_faults_wait_or_cost_only_reuse(cluster, kube, kubelet, operator, tmp_path, monkeypatch, caplog):
    """Storage that does not answer is waited for (the step stays Running, nothing lost);
    storage that refuses costs only reuse (a warning), and the run goes on."""
    answers = [ConnectionResetError(104, "Connection reset by peer"), PermissionError(13, "Permission denied", "x")]

    def write_entry(fs, workdir, entry):
        raise answers.pop(0)

    monkeypatch.setattr(Controller, "retry_seconds", 0.05)
    monkeypatch.setattr(pipeline_reconcile.reuse, "write_entry", write_entry)
    async with operator():
        await create_run(kube, pipeline("faulty", str(tmp_path), [container("a")]))
        await eventually(lambda: cluster.get("jobs", "faulty-a"))
        await complete(kubelet, "faulty-a")
        status = await finished(cluster, "faulty")
    assert answers == [] and status["phase"] == "Succeeded"
    assert "the reuse index under" in caplog.text and "is unreachable, retrying" in caplog.text
    assert "is refused, so steps are neither reused nor recorded" in caplog.text


async def test_restart_after_a_failure_and_with_a_batch_step_running(cluster, kube, kubelet, operator, inputs,
                                                                     tmp_path):
    score = {"name": "score", "batchInference": {
        "input": {"uri": inputs["input"], "type": "files"}, "code": {"entryScript": "score.py"},
        "output": {"uri": inputs["output"]}, "miniBatchSize": 1, "nodeCount": 2}}
    body = pipeline("mixed", str(tmp_path), [container("a"), container("b", dependsOn=["a"]), score],
                    final=[container("cleanup")])
    async with operator():
        await create_run(kube, body)
        await eventually(lambda: cluster.get("jobs", "mixed-a") and cluster.get("batchinferencejobs", "mixed-score"))
        await fail(kubelet, "mixed-a")
        await eventually(lambda: step(cluster, "mixed", "b").get("phase") == "Skipped")
    async with operator():  # restarted with a failed step, a skipped one and a batch step running
        await eventually(lambda: (cluster.get("batchinferencejobs", "mixed-score") or {}).get("status", {}).get(
            "phase") == "Running")
        await score_to_the_end(cluster, kubelet, "mixed-score")
        await eventually(lambda: cluster.get("jobs", "mixed-cleanup"))
    async with operator():  # and with the finally step running
        await complete(kubelet, "mixed-cleanup")
        status = await finished(cluster, "mixed")
    assert status["phase"] == "Failed" and status["steps"]["score"]["phase"] == "Succeeded"
    assert [status["steps"][s]["phase"] for s in ("a", "b", "cleanup")] == ["Failed", "Skipped", "Succeeded"]
    assert cluster.creations["batchinferencejobs", "mixed-score"] == 1
    assert [cluster.creations["jobs", f"mixed-{s}"] for s in ("a", "cleanup", "score-score")] == [1, 1, 1]
    assert cluster.creations["jobs", "mixed-b"] == 0


PARALLEL = """
kind: Component
type: parallel
name: score_files
version: "1"
inputs: {files: {type: uri_folder}, threshold: {type: integer, default: 3}}
outputs: {scores: {type: uri_folder}}
batchInference:
  input: {uri: "${{inputs.files}}", type: files}
  code: {entryScript: score.py}
  miniBatchSize: 1
  nodeCount: 2
  errorThreshold: "${{inputs.threshold}}"
  output: {uri: "${{outputs.scores}}"}
  environment: {image: example.com/scorer:2}
"""


async def test_parallel_component_runs_as_a_batch_inference_job(cluster, kube, kubelet, operator, inputs, tmp_path):
    await kube.create(path("v1", "configmaps", NAMESPACE), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "score-files"}, "data": {"component.yaml": PARALLEL}})
    body = pipeline("par", str(tmp_path), [
        {"name": "score", "component": {"configMap": "score-files"}, "inputs": {"files": inputs["input"]}},
        container("use", "echo", "${{steps.score.outputs.scores}}"),
    ])
    async with operator():
        await create_run(kube, body)
        bij = await eventually(lambda: cluster.get("batchinferencejobs", "par-score"))
        await score_to_the_end(cluster, kubelet, "par-score")
        use = await eventually(lambda: cluster.get("jobs", "par-use"))
    scores = f"{tmp_path}/par/score/scores/"
    assert bij["spec"]["output"]["uri"] == scores and bij["spec"]["errorThreshold"] == 3
    assert bij["spec"]["environment"]["image"] == "example.com/scorer:2"
    assert use["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", scores]
    assert cluster.get("configmaps", "par-score-step") is None  # a BatchInferenceJob needs no resolved step file


async def test_a_child_of_another_run_is_not_adopted(cluster, kube, kubelet, operator, tmp_path, monkeypatch):
    """A Job of the same name left by an earlier run of the same name (still being deleted) is waited out."""
    monkeypatch.setattr(Controller, "retry_seconds", 0.05)
    old = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "twice-a", "labels": {
        "app.kubernetes.io/managed-by": "parallelrun-operator", "parallelrun.dev/pipelinerun-uid": "an-earlier-run",
        "parallelrun.dev/step": "a"}}, "spec": {"template": {"spec": {"containers": []}}}}
    await kube.create(path("batch/v1", "jobs", NAMESPACE), old)
    async with operator():
        run = await create_run(kube, pipeline("twice", str(tmp_path), [container("a")]))
        await eventually(lambda: cluster.creations["jobs", "twice-a"] == 1 and cluster.writes.count(
            ("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")) >= 3)  # ours was refused (409), more than once
        assert step(cluster, "twice", "a").get("phase") != "Running"
        await kube.request("DELETE", path("batch/v1", "jobs", NAMESPACE, "twice-a"))
        ours = await eventually(lambda: (cluster.get("jobs", "twice-a") or {}).get("metadata", {}).get("labels", {}).get(
            "parallelrun.dev/pipelinerun-uid") == run["metadata"]["uid"] and cluster.get("jobs", "twice-a"))
        await complete(kubelet, "twice-a")
        status = await finished(cluster, "twice")
    assert status["phase"] == "Succeeded" and ours["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "a"]
