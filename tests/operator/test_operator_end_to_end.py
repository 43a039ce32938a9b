"""End to end: the pods the operator built run as local processes (operator_harness.ProcessKubelet)
and write the right output."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest
from operator_harness import (
    BIJ_API,
    NAMESPACE,
    PLURAL,
    ProcessKubelet,
    condition,
    create,
    eventually,
    resource,
    status_of,
)

from parallelrun.operator.kit.kube import path

pytestmark = pytest.mark.timeout(120)

SCORE_PY = textwrap.dedent('''
    import os

    def init():
        global prefix
        prefix = os.environ["GREETING"]

    def run(mini_batch):
        return [f"{prefix} {os.path.basename(p)} {len(open(p).read())}" for p in mini_batch]
''')


async def test_pods_run_the_runner_and_write_the_output(cluster, kube, kubelet, operator, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    texts = {f"doc-{i}.txt": "x" * (i + 1) for i in range(7)}
    for name, text in texts.items():
        (data / name).write_text(text)
    await kube.create(path("v1", "configmaps", NAMESPACE), {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e2e-code"}, "data": {"score.py": SCORE_PY}})
    await kube.create(path("v1", "secrets", NAMESPACE), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e2e-creds"},
        "data": {"AZURE_STORAGE_ACCOUNT_NAME": base64.b64encode(b"unused").decode()}})
    inputs = {"input": str(data) + "/", "output": str(tmp_path / "out") + "/"}
    body = resource("e2e", inputs, miniBatchSize=2, processCountPerNode=1,
                    code={"configMap": "e2e-code", "entryScript": "score.py"},
                    environment={"image": "example.com/scorer:1", "env": [{"name": "GREETING", "value": "hello"}]},
                    storage={"secretRef": {"name": "e2e-creds"}})
    pods = ProcessKubelet(cluster, kubelet, tmp_path / "node")

    async with operator():
        await create(kube, body)
        await eventually(lambda: status_of(cluster, "e2e").get("phase") == "Running")
        status = await pods.run_to_the_end("e2e", nodes=2)

    assert condition(status, "Succeeded")["status"] == "True", status["message"]
    assert status["progress"] == {"miniBatches": {"total": 4, "succeeded": 4, "failed": 0},
                                  "items": {"succeeded": 7, "failed": 0}}
    output = Path(status["outputUri"])
    assert output == tmp_path / "out" / "parallel_run_step.txt"
    assert output.read_text().splitlines() == [f"hello {name} {len(text)}" for name, text in sorted(texts.items())]
    page = Path(status["report"])  # the merge pod wrote the run's report page
    assert page == tmp_path / "out" / "_parallelrun" / status["runId"] / "report" / "report.html"
    html = page.read_text()
    assert 'id="phase">Succeeded<' in html and 'id="items-succeeded">7<' in html
    assert status["itemsPerSecond"] >= 0


async def test_no_pod_for_a_shard_without_work(cluster, kube, kubelet, operator, tmp_path):
    """nodeCount 4 over 2 mini-batches: 2 pods, and the merge does not wait for the 2 empty shards."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"doc-{i}.txt").write_text("x" * i)
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text("import os\n\n\ndef run(mini_batch):\n"
                                   "    return [os.path.basename(p) for p in mini_batch]\n")
    body = resource("few", {"input": str(data) + "/", "output": str(tmp_path / "out") + "/"}, miniBatchSize=2,
                    nodeCount=4, processCountPerNode=1, code={"uri": str(code) + "/", "entryScript": "score.py"})
    async with operator():
        await create(kube, body)
        status = await eventually(lambda: status_of(cluster, "few").get("phase") == "Running"
                                  and status_of(cluster, "few"))
        job = cluster.get("jobs", "few-score")["spec"]
        assert job["completions"] == job["parallelism"] == 2 and status["nodesText"] == "0/2"
        assert "on 2 node(s) (nodeCount 4: only 2 shard(s) have work)" in status["message"]
        status = await ProcessKubelet(cluster, kubelet, tmp_path / "node").run_to_the_end("few", nodes=2)
    assert condition(status, "Succeeded")["status"] == "True", status["message"]
    assert Path(status["outputUri"]).read_text().split() == ["doc-0.txt", "doc-1.txt", "doc-2.txt"]


async def test_a_re_applied_job_with_retry_failed_repairs_its_finished_run(cluster, kube, kubelet, operator, tmp_path):
    """spec.retryFailed on the cluster: the job's finished run with failed items is repaired by the
    resource applied again under its name, with the fixed script: only the failed mini-batch runs,
    its rows spliced into the same ordered output, the old output kept as .previous."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"doc-{i}.txt").write_text(str(i))
    code = tmp_path / "code"
    code.mkdir()
    calls = tmp_path / "calls.log"
    script = ("import os\n\n\ndef run(mini_batch):\n"
              f"    open({str(calls)!r}, 'a').write(' '.join(os.path.basename(p) for p in mini_batch) + '\\n')\n"
              "    if any(p.endswith('doc-3.txt') for p in mini_batch) and {bug}:\n"
              "        raise ValueError('a bug')\n"
              "    return [os.path.basename(p) for p in mini_batch]\n")
    (code / "score.py").write_text(script.format(bug="True"))
    inputs = {"input": str(data) + "/", "output": str(tmp_path / "out") + "/"}
    body = resource("fix", inputs, miniBatchSize=2, processCountPerNode=1, runMaxTry=1,
                    code={"uri": str(code) + "/", "entryScript": "score.py"})
    pods = ProcessKubelet(cluster, kubelet, tmp_path / "node")
    async with operator():
        await create(kube, body)
        await eventually(lambda: status_of(cluster, "fix").get("phase") == "Running")
        first = await pods.run_to_the_end("fix", nodes=2)
        assert first["phase"] == "Succeeded" and first["progress"]["items"] == {"succeeded": 4, "failed": 2}
        output = Path(first["outputUri"])
        assert output.read_text().split() == ["doc-0.txt", "doc-1.txt", "doc-4.txt", "doc-5.txt"]

        await kube.request("DELETE", path(BIJ_API, PLURAL, NAMESPACE, "fix"))
        await eventually(lambda: cluster.get(PLURAL, "fix") is None)
        gone = [("batch/v1", "jobs", "fix-score"), ("batch/v1", "jobs", "fix-merge"), ("v1", "configmaps", "fix-spec"),
                ("v1", "pods", "fix-score-0-0"), ("v1", "pods", "fix-score-1-0"), ("v1", "pods", "fix-merge-0-0")]
        for api, plural, name in gone:  # what Kubernetes' garbage collector does with the owner gone
            await kube.request("DELETE", path(api, plural, NAMESPACE, name))
        (code / "score.py").write_text(script.format(bug="False"))
        calls.write_text("")
        await create(kube, dict(body, spec=dict(body["spec"], retryFailed=True)))
        status = await eventually(lambda: status_of(cluster, "fix").get("phase") == "Running"
                                  and status_of(cluster, "fix"))
        assert status["runId"] == first["runId"] and f"repairing run {first['runId']}" in status["message"]
        assert f"--run-id {first['runId']}" in " ".join(
            cluster.get("jobs", "fix-score")["spec"]["template"]["spec"]["containers"][0]["command"])
        repaired = await ProcessKubelet(cluster, kubelet, tmp_path / "node-2").run_to_the_end("fix", nodes=2)

    assert repaired["phase"] == "Succeeded", repaired["message"]
    assert repaired["progress"]["items"] == {"succeeded": 6, "failed": 0}
    assert calls.read_text().split() == ["doc-2.txt", "doc-3.txt"]  # the failed mini-batch alone ran again
    assert output.read_text().split() == [f"doc-{i}.txt" for i in range(6)]
    assert Path(str(output) + ".previous").read_text().split() == ["doc-0.txt", "doc-1.txt", "doc-4.txt", "doc-5.txt"]
    assert (tmp_path / "out" / "_parallelrun" / first["runId"] / "errors.jsonl").read_text() == ""


async def test_retry_failed_without_a_finished_run_fails_saying_so(cluster, kube, operator, inputs):
    async with operator():
        await create(kube, resource("never", inputs, retryFailed=True))
        status = await eventually(lambda: status_of(cluster, "never").get("phase") == "Failed"
                                  and status_of(cluster, "never"))
    assert condition(status, "Failed")["reason"] == "RepairFailed"
    assert "no finished run of never" in status["message"] and cluster.get("jobs", "never-score") is None
