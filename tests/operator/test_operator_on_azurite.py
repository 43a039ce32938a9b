"""The README's cluster walk-through of the iris example, on the emulator and a real Azurite.

The data and model go up with the README's own upload command; the Secret and the
code ConfigMap are what its kubectl lines make; examples/iris/job-azure.yaml is applied
as it is. The process kubelet then runs the pods the operator built, so the run reads
and writes Azure Blob Storage through the credentials of spec.storage.secretRef only.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from operator_harness import NAMESPACE, ROOT, ProcessKubelet, condition, create, eventually, status_of

from parallelrun.operator.kit.kube import path

sys.path.insert(0, str(ROOT / "tests" / "azure"))
from azurite import CREDENTIAL_VARIABLES, start_for_tests

pytestmark = pytest.mark.timeout(240)
ROWS = 30_000


@pytest.fixture
def azurite(tmp_path):
    server = start_for_tests(tmp_path / "azurite")
    yield server
    server.stop()


def readme_upload_command() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"^python -c 'import fsspec.*'$", readme, re.MULTILINE).group(0)


async def test_iris_example_on_a_cluster_with_blob_storage(azurite, cluster, kube, kubelet, operator, tmp_path):
    here = tmp_path / "checkout"
    subprocess.run([sys.executable, str(ROOT / "examples/iris/prepare.py"), "--rows", str(ROWS),
                    "--data-dir", str(here / "examples/iris/data"), "--model-dir", str(here / "examples/iris/model")],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the README's activated venv
    subprocess.run(readme_upload_command(), shell=True, cwd=here, check=True,
                   env=dict(env, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string))

    secret = base64.b64encode(azurite.connection_string.encode()).decode()
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "blob-creds"}, "data": {"AZURE_STORAGE_CONNECTION_STRING": secret}})
    await kube.create(path("v1", "configmaps", NAMESPACE), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "iris-code"}, "data": {"score.py": (ROOT / "examples/iris/score.py").read_text()}})
    body = yaml.safe_load((ROOT / "examples/iris/job-azure.yaml").read_text())
    body["metadata"]["namespace"] = NAMESPACE
    body["spec"]["miniBatchSize"] = 5_000  # rows: the small set in 6 mini-batches, 3 a pod ("1MB" would be 1)
    pods = ProcessKubelet(cluster, kubelet, tmp_path / "node")

    async with operator():
        await create(kube, body)
        status = await eventually(lambda: status_of(cluster, "iris-scoring").get("phase") == "Running"
                                  and status_of(cluster, "iris-scoring"), timeout=30)
        assert status["progress"]["miniBatches"]["total"] == 6
        status = await pods.run_to_the_end("iris-scoring", nodes=2)

    assert condition(status, "Succeeded")["status"] == "True", status["message"]
    assert status["outputUri"] == "az://iris/output/iris_predictions.csv"
    assert status["progress"]["items"] == {"succeeded": ROWS, "failed": 0}
    options = {"connection_string": azurite.connection_string}
    output = pd.read_csv(status["outputUri"], storage_options=options)
    inputs = pd.read_parquet(sorted((here / "examples/iris/data").glob("*.parquet")))
    assert len(output) == ROWS and set(output["Prediction"]) <= {"setosa", "versicolor", "virginica"}
    pd.testing.assert_frame_equal(output.drop(columns="Prediction"), inputs.reset_index(drop=True),
                                  check_dtype=False)
