"""End to end: the pods the operator built run as local processes and write the right output.

A small "process kubelet" runs each pod of the operator's Jobs as a process: the
container's command and environment as built, its volumes as folders (a ConfigMap's
keys as files, an emptyDir as an empty folder) with mount paths mapped onto them, the
secret of envFrom as variables, JOB_COMPLETION_INDEX as the Job controller sets it,
and the termination message read back into the pod's status. Only `python` becomes
this interpreter, as if the image had parallelrun installed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import textwrap
from pathlib import Path

import pytest
from operator_harness import NAMESPACE, Cluster, Kubelet, condition, create, eventually, resource, status_of

from parallelrun.operator.kube import path

pytestmark = pytest.mark.timeout(120)

SCORE_PY = textwrap.dedent('''
    import os

    def init():
        global prefix
        prefix = os.environ["GREETING"]

    def run(mini_batch):
        return [f"{prefix} {os.path.basename(p)} {len(open(p).read())}" for p in mini_batch]
''')


class ProcessKubelet:
    def __init__(self, cluster: Cluster, kubelet: Kubelet, root: Path):
        self.cluster, self.kubelet, self.root = cluster, kubelet, root

    async def run(self, job_name: str, index: int) -> int:
        pod = await self.kubelet.start(job_name, index)
        template = self.cluster.get("jobs", job_name)["spec"]["template"]["spec"]
        container = template["containers"][0]
        folder = self.root / pod
        mounts = {m["mountPath"]: self._volume(folder, next(v for v in template["volumes"] if v["name"] == m["name"]))
                  for m in container["volumeMounts"]}

        def mapped(value: str) -> str:
            for mount_path, host in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(host) + value[len(mount_path):]
            return value

        env = {"PATH": os.environ["PATH"], "PARALLELRUN_TERMINATION_LOG": str(folder / "termination-log")}
        for source in container.get("envFrom", []):
            secret = self.cluster.get("secrets", source["secretRef"]["name"])
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
        env.update({e["name"]: mapped(e["value"]) for e in container["env"]})
        if self.cluster.get("jobs", job_name)["spec"].get("completionMode") == "Indexed":
            env["JOB_COMPLETION_INDEX"] = str(index)
        command = [sys.executable if arg == "python" else mapped(arg) for arg in container["command"]]
        process = await asyncio.create_subprocess_exec(*command, env=env, cwd=folder,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        log = folder / "termination-log"
        message = log.read_text() if log.exists() else output.decode()[-4000:]  # FallbackToLogsOnError
        await self.kubelet.finish(pod, process.returncode, message)
        if process.returncode:
            print(output.decode())
        return process.returncode

    def _volume(self, folder: Path, volume: dict) -> Path:
        host = folder / "volumes" / volume["name"]
        host.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in self.cluster.get("configmaps", volume["configMap"]["name"])["data"].items():
                (host / key).write_text(text)
        return host


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
        assert await asyncio.gather(pods.run("e2e-score", 0), pods.run("e2e-score", 1)) == [0, 0]
        await eventually(lambda: status_of(cluster, "e2e").get("phase") == "Merging", timeout=20)
        assert await pods.run("e2e-merge", 0) == 0
        status = await eventually(lambda: status_of(cluster, "e2e").get("phase") in ("Succeeded", "Failed")
                                  and status_of(cluster, "e2e"), timeout=20)

    assert condition(status, "Succeeded")["status"] == "True", status["message"]
    assert status["progress"] == {"miniBatches": {"total": 4, "succeeded": 4, "failed": 0},
                                  "items": {"succeeded": 7, "failed": 0}}
    output = Path(status["outputUri"])
    assert output == tmp_path / "out" / "parallel_run_step.txt"
    assert output.read_text().splitlines() == [f"hello {name} {len(text)}" for name, text in sorted(texts.items())]
