"""The operator against kmock's Kubernetes emulator, with the tests as Job controller and kubelet.

    cluster     a KubernetesEmulator on a local port, serving the built-in kinds and the
                CRDs of crds/ (with uid, resourceVersion, generation as a real API server sets them)
    operator    starts/stops the real kopf operator in the test's event loop (restartable)
    kube        the operator's own API client, logged in to the emulator (the tests' kubectl)
    kubelet     makes and ends the pods of the operator's Jobs, as Kubernetes would
    inputs      10 small files to plan, and an output folder
    schema      checks a stored resource, status included, against the CRD as the API server
                would (a status field missing from the schema would be pruned, silently)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

import kmock
import kopf
import pytest
import yaml
from operator_harness import IMAGE, ROOT, TEST_TOKEN, Cluster, Kubelet, crd_resource_info

from parallelrun.operator import handlers  # noqa: F401  (registers the handlers with kopf)
from parallelrun.operator.kit.controller import Wakeups
from parallelrun.operator.kit.creates import CreatesFirst
from parallelrun.operator.kit.kube import KubeApi

sys.path.insert(0, str(ROOT / "tests" / "chart"))
from crd_validation import CustomResourceValidator, load_documents


@pytest.fixture
async def cluster():
    async with Cluster() as emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
            key, info = crd_resource_info(yaml.safe_load(crd_file.read_text()))
            emulator.resources[key] = info
        yield emulator


@pytest.fixture
async def kube(cluster):
    api = KubeApi()
    await api.connect(kopf.ConnectionInfo(server=str(cluster.url), token=TEST_TOKEN))
    yield api
    await api.close()


@pytest.fixture
def operator(cluster):
    """`async with operator() as memo:` runs the operator until the block ends (a restart is two blocks).

    Its storage is the tests' local folders, which the process kubelet's pods share
    (--local-storage); `operator(local_storage=False)` is the default of a real cluster.

    It runs in a thread with its own event loop, as in a process of its own: kopf owns
    every task of its loop (it waits for and cancels them all when it stops). `memo` is its
    memo: a test watches what the operator does through `memo.wakeups` (the drives that
    ended) and `memo.creates` (who waits for the schedules' creates).
    """

    @contextlib.asynccontextmanager
    async def run(**memo):
        stop, ready = threading.Event(), threading.Event()
        settings = kopf.OperatorSettings()
        settings.watching.reconnect_backoff = 0.1
        memo = kopf.Memo(**{"connection": kopf.ConnectionInfo(server=str(cluster.url)), "default_image": IMAGE,
                            "local_storage": True, "wakeups": Wakeups(), "creates": CreatesFirst(), **memo})
        thread = threading.Thread(name="operator", daemon=True, target=kopf.run, kwargs={
            "clusterwide": True, "standalone": True, "stop_flag": stop, "ready_flag": ready, "settings": settings, "memo": memo})
        thread.start()
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"
        try:
            yield memo
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 20)
            assert not thread.is_alive(), "the operator did not stop"

    return run


@pytest.fixture
def kubelet(kube, cluster):
    return Kubelet(kube, cluster)


@pytest.fixture
def inputs(tmp_path):
    """A folder of 10 small files, and where the output goes."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(10):
        (data / f"item-{i:02d}.txt").write_text(f"item {i}\n")
    return {"input": str(data) + "/", "output": str(tmp_path / "out") + "/"}




@pytest.fixture(scope="session")
def schema() -> CustomResourceValidator:
    return CustomResourceValidator(load_documents(sorted((ROOT / "crds").glob("*.yaml"))))
