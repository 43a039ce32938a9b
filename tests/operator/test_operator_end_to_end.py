"""End to end: the pods the operator built run as local processes (operator_harness.ProcessKubelet)
and write the right output."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest
from operator_harness import NAMESPACE, ProcessKubelet, condition, create, eventually, resource, status_of

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
