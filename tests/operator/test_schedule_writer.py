"""A schedule loop's StatusWriter and CreatesFirst on the emulator: the latest status is
persisted, a removed field is removed, a refused patch is retried with the newest status, and
creates go first: from a thread of their own, a few at a time, while the operator's loop is busy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time

import attrs
import kmock
import kopf
import pytest
from operator_harness import NAMESPACE, Cluster, eventually

from parallelrun.operator.kit.creates import SWITCH_INTERVAL, CreatesFirst
from parallelrun.operator.kit.kube import KubeApi, path
from parallelrun.operator.schedules import controller as schedule
from parallelrun.operator.schedules.controller import StatusWriter

pytestmark = pytest.mark.timeout(30)

API = "parallelrun.dev/v1alpha1"
T1, T2, T3 = "2026-01-05T06:01:00Z", "2026-01-05T06:02:00Z", "2026-01-05T06:03:00Z"


def stored(cluster) -> dict:
    return (cluster.get("pipelineschedules", "writer") or {}).get("status") or {}


@pytest.fixture
async def writer(cluster, kube, monkeypatch):
    """A StatusWriter running for a schedule, through a client the emulator's faults apply to."""
    monkeypatch.setattr(schedule, "RETRY_SECONDS", 0.05)
    await kube.create(path(API, "pipelineschedules", NAMESPACE), {
        "apiVersion": API, "kind": "PipelineSchedule", "metadata": {"name": "writer", "namespace": NAMESPACE},
        "spec": {"schedule": {"cron": "* * * * *"}, "template": {"spec": {"workdir": "/tmp/w/", "steps": []}}}})
    api = KubeApi()
    await api.connect(kopf.ConnectionInfo(server=str(cluster.url)))
    writer = StatusWriter(api, path(API, "pipelineschedules", NAMESPACE, "writer", "status"), {}, CreatesFirst(),
                          logging.getLogger(__name__))
    task = asyncio.create_task(writer.run())
    yield writer
    task.cancel()
    await api.close()


async def test_latest_status_written_after_a_refused_patch(cluster, writer):
    writer.want({"handledUntil": T1, "active": ["writer-202601050601"]})
    await eventually(lambda: stored(cluster) == {"handledUntil": T1, "active": ["writer-202601050601"]})
    fault = cluster.refuse("patch", "pipelineschedules/status", status=503, reason="ServiceUnavailable",
                           message="down")
    writer.want({"handledUntil": T2, "active": ["writer-202601050601"]})
    await eventually(lambda: fault.hits)
    assert stored(cluster)["handledUntil"] == T1  # the memory persisted did not move
    writer.want({"handledUntil": T3})  # newer, and `active` gone
    cluster.faults.clear()
    await eventually(lambda: stored(cluster) == {"handledUntil": T3})


async def test_status_waits_for_the_creates_under_way(cluster, writer):
    writer.creates.pending = 1  # a create under way
    writer.creates._idle.clear()
    writer.want({"handledUntil": T1})
    await eventually(lambda: writer.creates.waiting[""])  # the writer waits for it
    assert stored(cluster) == {}
    writer.creates.pending = 0
    writer.creates._idle.set()
    await eventually(lambda: stored(cluster) == {"handledUntil": T1})


@attrs.define(kw_only=True)
class SlowCluster(Cluster):
    """The emulator answering each create after `delay` (or its name's in `delays`); when each was
    answered, and the most in flight."""

    delay: float = 0.02
    delays: dict = attrs.field(factory=dict)
    in_flight: int = 0
    most: int = 0
    answered: list = attrs.field(factory=list)

    async def _handle(self, request):
        if request.action != kmock.action.CREATE:
            return await super()._handle(request)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get((request.data or {}).get("metadata", {}).get("name"), self.delay))
            return await super()._handle(request)
        finally:
            self.in_flight -= 1
            self.answered.append(time.monotonic())


@contextlib.contextmanager
def served_from_a_thread(emulator: Cluster):
    """The emulator on an event loop of its own, so that the test's loop can be kept busy; its URL."""
    ready, box = threading.Event(), {}

    async def serve() -> None:
        async with emulator, kmock.Server(emulator):
            emulator.resources.load_bundled()
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the emulator did not start"
    try:
        yield str(emulator.url)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


async def test_creates_go_from_their_own_thread_a_few_at_a_time():
    emulator = SlowCluster()
    with served_from_a_thread(emulator) as url:
        creates = CreatesFirst(concurrency=3)
        await creates.connect(kopf.ConnectionInfo(server=url))
        try:
            tasks = [asyncio.create_task(creates.create(path("v1", "configmaps", NAMESPACE), {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": NAMESPACE}}))
                for i in range(12)]
            await asyncio.sleep(0)  # each task hands its create over
            assert creates.pending == 12
            busy_until = time.monotonic() + 1.0
            time.sleep(1.0)  # the operator's loop is busy (kopf reacting to a thousand new runs)
            assert len(emulator.answered) == 12 and max(emulator.answered) < busy_until  # served meanwhile
            assert emulator.most == 3
            created = await asyncio.gather(*tasks)
            assert [c["metadata"]["name"] for c in created] == [f"c{i}" for i in range(12)]
            assert creates.pending == 0
        finally:
            await creates.close()
    assert "schedule-creates" not in {t.name for t in threading.enumerate()}


async def test_while_creates_are_under_way_the_interpreter_hands_their_thread_its_turn_sooner():
    normal = sys.getswitchinterval()
    emulator = SlowCluster(delays={"two": 0.5})
    with served_from_a_thread(emulator) as url:
        first, second = CreatesFirst(), CreatesFirst()  # two in one process: the interval is the process's
        await first.connect(kopf.ConnectionInfo(server=url))
        await second.connect(kopf.ConnectionInfo(server=url))
        try:
            def create(creates: CreatesFirst, name: str) -> asyncio.Task:
                return asyncio.create_task(creates.create(path("v1", "configmaps", NAMESPACE), {
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}}))

            one = create(first, "one")
            await asyncio.sleep(0)
            assert sys.getswitchinterval() == SWITCH_INTERVAL < normal
            two = create(second, "two")
            await one
            assert sys.getswitchinterval() == SWITCH_INTERVAL  # the second's is still under way
            await two
            assert sys.getswitchinterval() == normal
        finally:
            await first.close()
            await second.close()
