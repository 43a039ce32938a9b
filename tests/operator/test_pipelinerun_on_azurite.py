"""A PipelineRun whose component file, outputs and reuse index are on Azure Blob Storage (a real
Azurite), reached only through the credentials of spec.storage.secretRef: the operator's own
environment has none."""

from __future__ import annotations

import base64
import json
import sys

import fsspec
import pytest
from operator_harness import BIJ_API, NAMESPACE, ROOT, eventually

from parallelrun.operator.kit.kube import path
from parallelrun.runner.api import PIPELINE_RUN

PLURAL = PIPELINE_RUN.plural

sys.path.insert(0, str(ROOT / "tests" / "azure"))
from azurite import CREDENTIAL_VARIABLES, start_for_tests  # noqa: E402

pytestmark = pytest.mark.timeout(120)

COMPONENT = ROOT / "examples" / "components" / "train-iris" / "component.yaml"  # the example, published to blob


@pytest.fixture
def azurite(tmp_path):
    server = start_for_tests(tmp_path / "azurite")
    yield server
    server.stop()


def run_body(name: str) -> dict:
    return {"apiVersion": BIJ_API, "kind": "PipelineRun", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"workdir": "az://pipes/work/", "storage": {"secretRef": {"name": "blob-creds"}}, "steps": [
                {"name": "train", "component": {"uri": "az://pipes/components/train.yaml"}}]}}


def phase_of(cluster, name: str) -> str | None:
    return ((cluster.get(PLURAL, name) or {}).get("status") or {}).get("phase")


async def test_components_outputs_and_reuse_index_on_blob_storage(azurite, cluster, kube, kubelet, operator,
                                                                  monkeypatch):
    for variable in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    blob = fsspec.filesystem("az", connection_string=azurite.connection_string, skip_instance_cache=True)
    blob.mkdir("pipes")
    blob.pipe_file("pipes/components/train.yaml", COMPONENT.read_bytes())
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "blob-creds"}, "data": {"AZURE_STORAGE_CONNECTION_STRING": base64.b64encode(
            azurite.connection_string.encode()).decode()}})
    async with operator():
        await kube.create(path(BIJ_API, PLURAL, NAMESPACE), run_body("first"))
        job = await eventually(lambda: cluster.get("jobs", "first-train"), timeout=30)
        blob.pipe_file("pipes/work/first/train/model/model.bin", b"weights")  # what the step's pod writes
        await kubelet.job_condition("first-train", "Complete", "Completed")
        await eventually(lambda: phase_of(cluster, "first") == "Succeeded", timeout=30)
        [entry] = blob.glob("pipes/work/_parallelrun/cache/*.json")
        assert json.loads(blob.cat_file(entry))["outputs"] == {"model": "az://pipes/work/first/train/model/"}

        await kube.create(path(BIJ_API, PLURAL, NAMESPACE), run_body("second"))
        await eventually(lambda: phase_of(cluster, "second") == "Succeeded", timeout=30)
    second = cluster.get(PLURAL, "second")["status"]["steps"]["train"]
    assert second["reused"] is True and second["outputs"] == {"model": "az://pipes/work/first/train/model/"}
    assert cluster.get("jobs", "second-train") is None
    runner = job["spec"]["template"]["spec"]["containers"][0]
    assert runner["image"] == "ghcr.io/parallelrun/examples:0.1.0" and runner["envFrom"] == [{"secretRef": {"name": "blob-creds"}}]
