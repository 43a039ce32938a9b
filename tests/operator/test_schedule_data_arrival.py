"""Data arrival by the operator on Azurite: ONE run per batch of new files, none skipped or doubled
across a restart between creating the run and moving the watermark."""

from __future__ import annotations

import asyncio
import base64
import sys
import time

import pytest
from operator_harness import NAMESPACE, ROOT, eventually

from parallelrun.operator.kit.kube import path

sys.path.insert(0, str(ROOT / "tests" / "azure"))
from azurite import start_for_tests

pytestmark = pytest.mark.timeout(120)
API = "parallelrun.dev/v1alpha1"


@pytest.fixture
def azurite(tmp_path):
    server = start_for_tests(tmp_path / "azurite")
    yield server
    server.stop()


def runs(cluster) -> list[dict]:
    found = [obj.raw for (resource, _, _), obj in cluster.objects.items()
             if resource.plural == "pipelineruns" and not obj.deleted]
    return sorted(found, key=lambda r: r["metadata"]["creationTimestamp"])


def poll_time(cluster) -> str | None:
    return ((cluster.get("pipelineschedules", "arrivals") or {}).get("status") or {}).get("lastPollTime")


def watermark(cluster) -> dict:
    return ((cluster.get("pipelineschedules", "arrivals") or {}).get("status") or {}).get("watermark") or {}


async def test_new_files_start_one_run_each_batch_across_a_restart(azurite, cluster, kube, operator):
    from adlfs import AzureBlobFileSystem

    fs = AzureBlobFileSystem(connection_string=azurite.connection_string)
    fs.mkdir("data")
    secret = base64.b64encode(azurite.connection_string.encode()).decode()
    await kube.create(path("v1", "secrets", NAMESPACE), {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "blob-creds"}, "data": {"AZURE_STORAGE_CONNECTION_STRING": secret}})
    schedule = {"apiVersion": API, "kind": "PipelineSchedule", "metadata": {"name": "arrivals", "namespace": NAMESPACE},
                "spec": {"trigger": {"dataArrival": {"uri": "az://data/in/", "pattern": "*.csv",
                                                     "pollIntervalSeconds": 1, "settleSeconds": 1}},
                         "concurrencyPolicy": "Allow",
                         "template": {"spec": {"workdir": "az://data/work/", "storage": {"secretRef": {"name": "blob-creds"}},
                                               "steps": [{"name": "score", "container": {
                                                   "image": "busybox", "command": ["cat", "${{trigger.manifest}}"]}}]}}}}

    def manifest(run: dict) -> list[str]:
        uri = run["spec"]["steps"][0]["container"]["command"][1]
        return fs.cat_file(uri.removeprefix("az://")).decode().split()

    async with operator():
        await kube.create(path(API, "pipelineschedules", NAMESPACE), schedule)
        await eventually(lambda: poll_time(cluster))
        await asyncio.sleep(1.1)  # Azure's times have whole seconds: the files come after the schedule
        await asyncio.sleep(1.02 - time.time() % 1)  # and one batch has one second (a poll takes it whole)
        fs.pipe_file("data/in/a.csv", b"1\n")
        fs.pipe_file("data/in/b.csv", b"2\n")
        fs.pipe_file("data/in/notes.txt", b"-\n")
        await eventually(lambda: len(runs(cluster)) == 1, timeout=20)
        assert manifest(runs(cluster)[0]) == ["az://data/in/a.csv", "az://data/in/b.csv"]
        await eventually(lambda: watermark(cluster).get("names"))
        fault = cluster.refuse("patch", "pipelineschedules/status", status=503, reason="ServiceUnavailable",
                               message="down")
        fs.pipe_file("data/in/c.csv", b"3\n")
        await eventually(lambda: len(runs(cluster)) == 2 and fault.hits, timeout=20)
    cluster.faults.clear()
    async with operator():  # the watermark did not move; the run of c exists: adopted, not made again
        await eventually(lambda: watermark(cluster).get("names") == ["c.csv"], timeout=20)
        for _ in range(2):  # more polls: nothing new
            polled = poll_time(cluster)
            await eventually(lambda: poll_time(cluster) > polled, timeout=20)
        assert len(runs(cluster)) == 2
        fs.pipe_file("data/in/d.csv", b"4\n")
        await eventually(lambda: len(runs(cluster)) == 3, timeout=20)
    assert [manifest(r) for r in runs(cluster)] == [["az://data/in/a.csv", "az://data/in/b.csv"],
                                                    ["az://data/in/c.csv"], ["az://data/in/d.csv"]]
    assert all(cluster.creations["pipelineruns", r["metadata"]["name"]] == 1 for r in runs(cluster))
    assert {r["metadata"]["labels"]["parallelrun.dev/trigger"] for r in runs(cluster)} == {"data"}
