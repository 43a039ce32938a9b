"""End to end: the Jobs and pods the operator built for a three-step pipeline run as local
processes (operator_harness.ProcessKubelet, the tests playing the Job controller too) and
write the right final output."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from operator_harness import BIJ_API, NAMESPACE, ProcessKubelet, condition, create, eventually, resource, status_of

from parallelrun.operator.kit.kube import path
from parallelrun.runner.api import PIPELINE_RUN

PLURAL = PIPELINE_RUN.plural

pytestmark = pytest.mark.timeout(120)

SCORE_PY = textwrap.dedent('''
    def init():
        pass

    def run(mini_batch):
        return [open(p).read().strip() + " scored" for p in mini_batch]
''')

PREPARE = "import pathlib, sys; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True); " \
          "[(d / f'item-{i}.txt').write_text(f'item {i}') for i in range(3)]"
PUBLISH = "import sys; open(sys.argv[2], 'w').write(open(sys.argv[1]).read().upper())"


async def run_job(pods: ProcessKubelet, name: str) -> None:
    """Run the Job's pod as a process, then set the Job's condition as the Job controller would."""
    code = await pods.run(name, 0)
    await pods.kubelet.job_condition(name, "Complete" if code == 0 else "Failed",
                                     "Completed" if code == 0 else "BackoffLimitExceeded")
    assert code == 0, f"the pod of Job {name} exited with {code}"


async def test_three_step_pipeline_runs_to_its_output(cluster, kube, kubelet, operator, tmp_path):
    workdir, data = tmp_path / "work", tmp_path / "data"
    component = {"kind": "Component", "name": "publish", "version": "1", "environment": {"image": "example.com/pub:1"},
                 "inputs": {"scores": {"type": "uri_file"}}, "outputs": {"report": {"type": "uri_file"}},
                 "command": [sys.executable, "-c", PUBLISH, "${{inputs.scores}}", "${{outputs.report}}"]}
    for name, key, text in (("e2e-code", "score.py", SCORE_PY), ("publish", "component.yaml", yaml.safe_dump(component))):
        await kube.create(path("v1", "configmaps", NAMESPACE), {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {key: text}})
    body = {"apiVersion": BIJ_API, "kind": "PipelineRun", "metadata": {"name": "e2e", "namespace": NAMESPACE},
            "spec": {"workdir": str(workdir), "steps": [
                {"name": "prepare", "container": {"image": "example.com/tools:1",
                                                  "command": ["python", "-c", PREPARE, str(data)]}},
                {"name": "score", "dependsOn": ["prepare"], "batchInference": {
                    "input": {"uri": f"{data}/", "type": "files"}, "miniBatchSize": 1, "nodeCount": 1,
                    "processCountPerNode": 1, "code": {"configMap": "e2e-code", "entryScript": "score.py"},
                    "environment": {"image": "example.com/scorer:1"},
                    "output": {"uri": "${{run.workdir}}/score/", "fileName": "scores.txt"}}},
                {"name": "publish", "component": {"configMap": "publish"},
                 "inputs": {"scores": "${{steps.score.outputs.outputFile}}"}},
            ]}}
    pods = ProcessKubelet(cluster, kubelet, tmp_path / "node")

    async with operator():
        await kube.create(path(BIJ_API, PLURAL, NAMESPACE), body)
        await eventually(lambda: cluster.get("jobs", "e2e-prepare"))
        await run_job(pods, "e2e-prepare")
        await eventually(lambda: (cluster.get("batchinferencejobs", "e2e-score") or {}).get("status", {}).get(
            "phase") == "Running", timeout=20)
        score = await pods.run_to_the_end("e2e-score", nodes=1)
        assert score["phase"] == "Succeeded", score.get("message")
        await eventually(lambda: cluster.get("jobs", "e2e-publish"), timeout=20)
        await run_job(pods, "e2e-publish")
        status = await eventually(lambda: (cluster.get(PLURAL, "e2e") or {}).get("status", {}).get("phase") in (
            "Succeeded", "Failed") and cluster.get(PLURAL, "e2e")["status"], timeout=20)

    assert status["phase"] == "Succeeded", status.get("message")
    report = Path(status["steps"]["publish"]["outputs"]["report"])
    assert report == workdir / "e2e" / "publish" / "report"
    assert report.read_text().splitlines() == ["ITEM 0 SCORED", "ITEM 1 SCORED", "ITEM 2 SCORED"]


async def test_allow_reuse_on_the_cluster(cluster, kube, kubelet, operator, tmp_path, schema):
    """A BatchInferenceJob with allowReuse and the spec, code and input of a succeeded run is
    Succeeded at once with that run's output; changed input runs again."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"item-{i}.txt").write_text(f"item {i}")
    await kube.create(path("v1", "configmaps", NAMESPACE), {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"}, "data": {"score.py": SCORE_PY}})
    inputs = {"input": f"{data}/", "output": f"{tmp_path}/out/"}
    spec = {"nodeCount": 1, "processCountPerNode": 1, "allowReuse": True, "code": {"configMap": "code", "entryScript": "score.py"}}
    pods = ProcessKubelet(cluster, kubelet, tmp_path / "node")
    async with operator():
        await create(kube, resource("first", inputs, **spec))
        await eventually(lambda: status_of(cluster, "first").get("phase") == "Running")
        first = await pods.run_to_the_end("first", nodes=1)
        assert first["phase"] == "Succeeded", first.get("message")
        assert list((tmp_path / "out" / "_parallelrun" / "cache").glob("*.json"))

        await create(kube, resource("second", inputs, **spec))
        second = await eventually(lambda: status_of(cluster, "second").get("phase") == "Succeeded"
                                  and status_of(cluster, "second"))
        (data / "item-1.txt").write_text("item 1, changed")
        await create(kube, resource("third", inputs, **spec))
        await eventually(lambda: status_of(cluster, "third").get("phase") == "Running")
    assert condition(second, "Succeeded")["reason"] == "Reused"
    assert second["outputUri"] == first["outputUri"] and second["runId"] == first["runId"]
    assert second["progress"]["miniBatches"] == {"total": 3, "succeeded": 3, "failed": 0}
    assert cluster.get("jobs", "second-score") is None and cluster.get("jobs", "third-score") is not None
    assert schema.validate(cluster.get("batchinferencejobs", "second")) == []
