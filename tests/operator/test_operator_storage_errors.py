"""Storage errors no retry can fix end a BatchInferenceJob Failed with the reason and the fix, at once.

Every class: a scheme nobody serves, a scheme whose package the operator's image lacks,
and credentials the storage refuses (a wrong account key, on a real Azurite). None
stays in Planning "retrying in 30s".
"""

from __future__ import annotations

import base64
import sys
import uuid

import pytest
from fsspec.registry import _registry as fsspec_classes
from operator_harness import NAMESPACE, ROOT, condition, create, eventually, resource, status_of

from parallelrun.operator.kit.kube import path

sys.path.insert(0, str(ROOT / "tests" / "azure"))
from azurite import ACCOUNT_KEY, start_for_tests

pytestmark = pytest.mark.timeout(120)


async def failed(cluster, name: str) -> dict:
    return await eventually(lambda: status_of(cluster, name).get("phase") in ("Failed", "Succeeded")
                            and status_of(cluster, name))


def assert_failed_once(cluster, status: dict, name: str, *words: str) -> None:
    failed_condition = condition(status, "Failed")
    assert failed_condition["reason"] == "PlanFailed", status
    for word in words:
        assert word in failed_condition["message"], failed_condition["message"]
    assert "retrying" not in status["message"]
    assert not cluster.get("jobs", f"{name}-score")


@pytest.mark.parametrize("uri, package, fix", [
    ("nosuchproto://bucket/in/", None, "no storage is known for the scheme nosuchproto://"),
    ("s3://bucket/in/", "s3fs", "pip install s3fs"),
    ("gs://bucket/in/", "gcsfs", "pip install gcsfs"),
], ids=["unknown scheme", "s3 without s3fs", "gs without gcsfs"])
async def test_a_scheme_the_operator_cannot_serve_fails_the_run(cluster, kube, operator, inputs, monkeypatch,
                                                               uri, package, fix):
    if package:  # as if not installed, whatever this machine has
        monkeypatch.setitem(sys.modules, package, None)
        monkeypatch.delitem(fsspec_classes, uri.split(":")[0], raising=False)
    async with operator():
        await create(kube, resource("scheme", dict(inputs, input=uri)))
        status = await failed(cluster, "scheme")
    assert_failed_once(cluster, status, "scheme", uri, fix)


@pytest.fixture
def azurite(tmp_path):
    server = start_for_tests(tmp_path / "azurite")
    yield server
    server.stop()


async def test_a_wrong_account_key_fails_the_run(azurite, cluster, kube, operator, monkeypatch):
    from adlfs import AzureBlobFileSystem

    container = f"t{uuid.uuid4().hex[:12]}"
    azfs = AzureBlobFileSystem(connection_string=azurite.connection_string)
    azfs.mkdir(container)
    azfs.pipe_file(f"{container}/in/a.txt", b"a\n")
    wrong_key = "d3Jvbmcga2V5" * 4 + "AAAAAAAAAAAAAAAAAAAAAA=="
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, wrong_key)
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "wrong-creds"}, "data": {"AZURE_STORAGE_CONNECTION_STRING": base64.b64encode(wrong.encode()).decode()}})
    monkeypatch.setenv("PARALLELRUN_STORAGE_RETRY_SECONDS", "2")
    body = resource("wrongkey", {"input": f"az://{container}/in/", "output": f"az://{container}/out/"},
                    storage={"secretRef": {"name": "wrong-creds"}})
    async with operator():
        await create(kube, body)
        status = await failed(cluster, "wrongkey")
    assert_failed_once(cluster, status, "wrongkey", "Azure Storage refused access", "403",
                       "spec.storage.secretRef")
    assert wrong_key not in str(status) and ACCOUNT_KEY not in str(status)
