"""The PipelineSchedule controller on the emulator, with a clock the tests move.

The tests play the PipelineRun controller: they set a run's status.phase.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import kmock
import pytest
import yaml
from kubectl_columns import INVALID, row
from operator_harness import NAMESPACE, ROOT, TEST_TOKEN, Cluster, eventually

from parallelrun.operator.kit.kube import path
from parallelrun.runner.api import ANNOTATION_RUN_NOW as RUN_NOW
from parallelrun.runner.api import ANNOTATION_SCHEDULED_TIME as SCHEDULED_TIME
from parallelrun.runner.api import FINALIZER
from parallelrun.runner.schedules.runs import parse_rfc3339 as parse_time

pytestmark = pytest.mark.timeout(60)

API = "parallelrun.dev/v1alpha1"
T0 = datetime(2026, 1, 5, 6, 0, 30, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


class FakeClock:
    """The operator's clock, moved by the test; sleeping polls it."""

    def __init__(self, now: datetime):
        self._now, self._lock = now, threading.Lock()
        self.sleeping: list[datetime | None] = []  # until when each sleeper sleeps (None: until woken)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def move(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta

    async def sleep_until(self, when, wake) -> None:
        self.sleeping.append(when)
        try:
            while not wake.is_set() and (when is None or self.now() < when):
                await asyncio.sleep(0.005)
        finally:
            self.sleeping.remove(when)


WORKDIR = {}


@pytest.fixture(autouse=True)
def workdir(tmp_path):
    """Each test's runs use a workdir of their own: a reuse index left by another test would
    let the PipelineRun controller reuse a step instead of running its Job."""
    WORKDIR["path"] = f"{tmp_path}/work/"


def schedule(name: str = "nightly", cron: str | None = "* * * * *", **spec) -> dict:
    body = {"template": {"spec": {"workdir": WORKDIR["path"], "steps": [{"name": "report", "container": {
        "image": "busybox", "command": ["echo", "${{schedule.scheduledTime}}"]}}]}}, **spec}
    if cron:
        body["schedule"] = {"cron": cron}
    return {"apiVersion": API, "kind": "PipelineSchedule", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": body}


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def scheduler(operator, clock):
    return lambda: operator(schedule_clock=clock)


async def create(kube, body: dict) -> dict:
    return await kube.create(path(API, "pipelineschedules", NAMESPACE), body)


def runs(cluster) -> list[str]:
    return sorted(name for (resource, ns, name), obj in cluster.objects.items()
                  if resource.plural == "pipelineruns" and not obj.deleted)


def status(cluster, name: str = "nightly") -> dict:
    return (cluster.get("pipelineschedules", name) or {}).get("status") or {}


def events(cluster, reason: str | None = None) -> list[str]:
    return [obj.raw.get("message") for (resource, _, _), obj in cluster.objects.items()
            if resource.plural == "events" and not obj.deleted and reason in (None, obj.raw.get("reason"))]


async def set_phase(cluster, kubelet, run: str, phase: str) -> None:
    """Bring `run` to `phase` (Running or Succeeded) as a cluster would: the operator's PipelineRun
    controller runs its one step's Job and writes the run's phase; the test plays the Job."""
    job = f"{run}-report"
    await eventually(lambda: cluster.get("jobs", job), timeout=20)
    if phase == "Succeeded":
        await kubelet.job_condition(job, "Complete", "Completed", succeeded=1)
    await eventually(lambda: ((cluster.get("pipelineruns", run) or {}).get("status") or {}).get("phase") == phase,
                     timeout=20)


async def annotate(kube, name: str, value: str) -> None:
    await kube.merge_patch(path(API, "pipelineschedules", NAMESPACE, name),
                           {"metadata": {"annotations": {RUN_NOW: value}}})


def sample(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_each_slot_creates_one_run_with_its_time(cluster, kube, scheduler, clock, schema):
    started, lags = sample("parallelrun_schedule_runs_started_total", trigger="schedule"), \
        sample("parallelrun_schedule_lag_seconds_count")
    async with scheduler():
        await create(kube, schedule())
        await eventually(lambda: status(cluster).get("nextScheduleTimes"))
        assert runs(cluster) == []
        assert status(cluster)["nextScheduleTimes"] == ["2026-01-05T06:01:00Z", "2026-01-05T06:02:00Z",
                                                        "2026-01-05T06:03:00Z"]
        clock.move(MIN)
        await eventually(lambda: runs(cluster) == ["nightly-202601050601"])
        run = cluster.get("pipelineruns", "nightly-202601050601")
        assert run["spec"]["steps"][0]["container"]["command"] == ["echo", "2026-01-05T06:01:00Z"]
        assert run["metadata"]["annotations"][SCHEDULED_TIME] == "2026-01-05T06:01:00Z"
        assert run["metadata"]["ownerReferences"][0]["kind"] == "PipelineSchedule"
        st = await eventually(lambda: status(cluster).get("lastScheduleTime") and status(cluster))
        assert st["lastScheduleTime"] == "2026-01-05T06:01:00Z" and st["active"] == ["nightly-202601050601"]
        assert st["nextScheduleTime"] == "2026-01-05T06:02:00Z"
        crd = yaml.safe_load((ROOT / "crds" / "pipelineschedules.yaml").read_text())
        cells = row(crd, cluster.get("pipelineschedules", "nightly"), clock.now())
        del cells["Age"]  # the emulator stamps creation in real time; this clock is virtual
        assert INVALID not in cells.values() and cells["Next"] == "2026-01-05T06:02:00Z", cells
        assert {c["type"]: c["status"] for c in st["conditions"]} == {
            "InvalidSchedule": "False", "Suspended": "False", "Ready": "True"}
        await eventually(lambda: events(cluster, "Started"))
        assert [str(v) for v in schema.validate(cluster.get("pipelineschedules", "nightly"))] == []
    assert cluster.creations["pipelineruns", "nightly-202601050601"] == 1
    assert sample("parallelrun_schedule_runs_started_total", trigger="schedule") == started + 1
    assert sample("parallelrun_schedule_lag_seconds_count") == lags + 1


async def test_runs_are_created_first_with_kopfs_finalizer(cluster, kube, scheduler, clock, monkeypatch):
    """While a schedule's create is under way, a new PipelineRun's reconciler waits for it; the
    schedule's run carries kopf's finalizer from its creation, so kopf has nothing to patch."""
    release, held = asyncio.Event(), []
    handle = Cluster._handle

    async def hold_the_operators_run_creates(self, request):
        if (request.action == kmock.action.CREATE and request.resource is not None
                and request.resource.plural == "pipelineruns"
                and request.headers.get("Authorization") != f"Bearer {TEST_TOKEN}"):
            held.append(request.data["metadata"]["name"])
            await release.wait()
        return await handle(self, request)

    monkeypatch.setattr(Cluster, "_handle", hold_the_operators_run_creates)
    async with scheduler() as memo:
        await create(kube, schedule())
        await eventually(lambda: status(cluster).get("handledUntil"))
        clock.move(MIN)
        await eventually(lambda: held == ["nightly-202601050601"])
        await kube.create(path(API, "pipelineruns", NAMESPACE), {
            "apiVersion": API, "kind": "PipelineRun", "metadata": {"name": "manual", "namespace": NAMESPACE},
            "spec": {"workdir": WORKDIR["path"], "steps": [{"name": "report", "container": {
                "image": "busybox", "command": ["echo", "now"]}}]}})
        await eventually(lambda: memo.creates.waiting["manual"])  # its controller waits for the creates
        assert cluster.get("configmaps", "manual-spec") is None and cluster.get("jobs", "manual-report") is None
        release.set()
        await eventually(lambda: cluster.get("jobs", "manual-report"), timeout=20)
        await eventually(lambda: cluster.get("jobs", "nightly-202601050601-report"), timeout=20)
    assert cluster.get("pipelineruns", "nightly-202601050601")["metadata"]["finalizers"] == [FINALIZER]
    assert not [p for m, p in cluster.writes if m == "PATCH" and p.endswith("/pipelineruns/nightly-202601050601")]


async def test_missed_slots_after_downtime_run_the_latest_and_are_reported(cluster, kube, scheduler, clock):
    async with scheduler():
        await create(kube, schedule(cron="*/5 * * * *"))
        await eventually(lambda: status(cluster).get("handledUntil"))
    clock.move(30 * MIN)  # down over 6 slots
    async with scheduler():
        await eventually(lambda: runs(cluster) == ["nightly-202601050630"])
        await eventually(lambda: len(events(cluster, "MissedSchedule")) == 5)
    assert runs(cluster) == ["nightly-202601050630"]
    assert sample("parallelrun_schedule_missed_slots_total") >= 5


@pytest.mark.parametrize(("policy", "extra", "expected"), [
    ("RunLatest", {}, ["nightly-202601050630"]),
    ("RunAll", {"maxMissedRuns": 2}, ["nightly-202601050625", "nightly-202601050630"]),
    ("RunAll", {}, [f"nightly-2026010506{m:02d}" for m in range(5, 35, 5)]),
    ("Skip", {}, []),
])
async def test_every_missed_slot_is_reported_and_counted_whether_it_runs_late_or_not(
        cluster, kube, scheduler, clock, policy, extra, expected):
    """Down across six slots, back 2 minutes after the last: each of them is a MissedSchedule
    Event and counts once in the metric, those run late as well as those dropped."""
    missed = sample("parallelrun_schedule_missed_slots_total")
    async with scheduler():
        await create(kube, schedule(cron="*/5 * * * *", missedRuns=policy, concurrencyPolicy="Allow", **extra))
        await eventually(lambda: status(cluster).get("handledUntil"))
    clock.move(32 * MIN)
    async with scheduler():
        await eventually(lambda: len(events(cluster, "MissedSchedule")) == 6)
        await eventually(lambda: runs(cluster) == expected)
        await eventually(lambda: len(events(cluster, "Started")) == len(expected))
    late = [m for m in events(cluster, "MissedSchedule") if ": run late as " in m]
    assert sorted(m.split(" run late as ")[1].split()[0] for m in late) == expected
    assert sample("parallelrun_schedule_missed_slots_total") - missed == 6


async def test_forbid_skips_then_history_prunes(cluster, kube, kubelet, scheduler, clock):
    async with scheduler():
        await create(kube, schedule(concurrencyPolicy="Forbid", successfulRunsHistoryLimit=1))
        await eventually(lambda: status(cluster).get("handledUntil"))
        clock.move(MIN)
        await eventually(lambda: runs(cluster) == ["nightly-202601050601"])
        await set_phase(cluster, kubelet, "nightly-202601050601", "Running")
        clock.move(MIN)
        await eventually(lambda: events(cluster, "Skipped"))
        assert runs(cluster) == ["nightly-202601050601"]
        await set_phase(cluster, kubelet, "nightly-202601050601", "Succeeded")
        await eventually(lambda: status(cluster).get("lastSuccessfulTime"))
        clock.move(MIN)
        await eventually(lambda: "nightly-202601050603" in runs(cluster))
        await set_phase(cluster, kubelet, "nightly-202601050603", "Succeeded")
        await eventually(lambda: runs(cluster) == ["nightly-202601050603"])  # one succeeded run kept


async def test_replace_deletes_the_running_run(cluster, kube, kubelet, scheduler, clock):
    async with scheduler():
        await create(kube, schedule(concurrencyPolicy="Replace"))
        await eventually(lambda: status(cluster).get("handledUntil"))
        clock.move(MIN)
        await eventually(lambda: runs(cluster) == ["nightly-202601050601"])
        await set_phase(cluster, kubelet, "nightly-202601050601", "Running")
        clock.move(MIN)
        await eventually(lambda: runs(cluster) == ["nightly-202601050602"])


async def test_run_now_fires_once_per_value_even_when_suspended(cluster, kube, kubelet, scheduler, clock):
    async with scheduler():
        await create(kube, schedule(cron=None, suspend=True))
        await eventually(lambda: status(cluster).get("handledUntil"))
        await annotate(kube, "nightly", "1")
        await eventually(lambda: len(runs(cluster)) == 1)
        await eventually(lambda: status(cluster).get("runNow") == "1")
        await set_phase(cluster, kubelet, runs(cluster)[0], "Succeeded")  # Forbid would skip a run-now beside it
        clock.move(MIN)
        await annotate(kube, "nightly", "2")
        await eventually(lambda: len(runs(cluster)) == 2)
    async with scheduler():  # a restart does not fire the handled value again
        clock.move(MIN)
        await eventually(lambda: status(cluster).get("handledUntil", "") >= "2026-01-05T06:02:30Z")
    assert len(runs(cluster)) == 2 and all(n.startswith("nightly-now-") for n in runs(cluster))


async def test_suspend_and_spec_change_fire_nothing(cluster, kube, scheduler, clock):
    async with scheduler():
        await create(kube, schedule(suspend=True))
        await eventually(lambda: status(cluster).get("handledUntil"))
        assert status(cluster)["nextScheduleTimes"] == []
        await eventually(lambda: clock.sleeping == [None])  # nothing is due: it sleeps until woken
        clock.move(3 * MIN)  # three slots pass while suspended
        assert runs(cluster) == []
        await kube.merge_patch(path(API, "pipelineschedules", NAMESPACE, "nightly"),
                               {"spec": {"suspend": False, "schedule": {"cron": "*/10 * * * *"}}})
        await eventually(lambda: events(cluster, "SpecChanged"))
        await eventually(lambda: status(cluster).get("nextScheduleTime") == "2026-01-05T06:10:00Z")
        assert runs(cluster) == []
        clock.move(7 * MIN)
        await eventually(lambda: runs(cluster) == ["nightly-202601050610"])


async def test_invalid_schedule_says_field_and_fix(cluster, kube, scheduler, clock):
    async with scheduler():
        await create(kube, schedule(cron="0 25 * * *"))
        st = await eventually(lambda: status(cluster).get("conditions") and status(cluster))
    invalid = next(c for c in st["conditions"] if c["type"] == "InvalidSchedule")
    assert invalid["status"] == "True" and invalid["message"].startswith("spec.schedule.cron: ")


async def test_two_replicas_make_one_run_per_slot(cluster, kube, operator, clock):
    async with operator(schedule_clock=clock), operator(schedule_clock=clock):
        await create(kube, schedule(concurrencyPolicy="Allow"))
        await eventually(lambda: status(cluster).get("handledUntil"))
        for _ in range(3):
            clock.move(MIN)
            await eventually(lambda: len(runs(cluster)) == _ + 1)
    assert runs(cluster) == ["nightly-202601050601", "nightly-202601050602", "nightly-202601050603"]
    assert all(cluster.creations["pipelineruns", n] == 1 for n in runs(cluster))


async def test_restart_between_create_and_status_adopts(cluster, kube, scheduler, clock):
    async with scheduler():
        await create(kube, schedule())
        await eventually(lambda: status(cluster).get("handledUntil"))
        fault = cluster.refuse("patch", "pipelineschedules/status", status=503, reason="ServiceUnavailable",
                               message="down")
        clock.move(MIN)
        await eventually(lambda: runs(cluster) == ["nightly-202601050601"] and fault.hits)
    cluster.faults.clear()
    assert status(cluster).get("lastScheduleTime") is None  # the memory did not move
    async with scheduler():
        await eventually(lambda: status(cluster).get("lastScheduleTime") == "2026-01-05T06:01:00Z"
                         or status(cluster).get("handledUntil", "") >= "2026-01-05T06:01:30Z")
    assert runs(cluster) == ["nightly-202601050601"] and cluster.creations["pipelineruns", "nightly-202601050601"] == 1


async def test_trigger_command_sets_run_now_through_the_api(cluster, kube, scheduler, clock, tmp_path):
    from parallelrun.cli import main

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{cluster.url}"}}}}]
users: [{{name: me, user: {{token: tests}}}}]
contexts: [{{name: emu, context: {{cluster: emu, user: me, namespace: {NAMESPACE}}}}}]
current-context: emu
""")
    async with scheduler():
        await create(kube, schedule(cron=None))
        await eventually(lambda: status(cluster).get("handledUntil"))
        assert await asyncio.to_thread(main, ["trigger", "psched/nightly", "--kubeconfig", str(kubeconfig)]) == 0
        await eventually(lambda: len(runs(cluster)) == 1)
        assert runs(cluster)[0].startswith("nightly-now-")
        assert await asyncio.to_thread(main, ["trigger", "psched/absent", "--kubeconfig", str(kubeconfig)]) == 2


async def test_a_failed_data_run_gives_its_files_to_the_next_run(cluster, kube, kubelet, operator, tmp_path, schema):
    """The operator's data arrival: a failed run's files go to the next data run, across a restart,
    even when history deletes failed runs at once; none is skipped, none in two runs."""
    import os

    clock = FakeClock(datetime.now(timezone.utc).replace(microsecond=0))
    incoming = tmp_path / "in"
    incoming.mkdir()
    body = schedule("arrivals", cron=None, trigger={"dataArrival": {
        "uri": str(incoming), "pattern": "*.csv", "pollIntervalSeconds": 60, "settleSeconds": 1}},
        failedRunsHistoryLimit=0, concurrencyPolicy="Allow")  # Allow: no run is held for the index to see a phase
    body["spec"]["template"]["spec"]["steps"][0]["container"]["command"] = ["cat", "${{trigger.manifest}}"]

    def arrive(name: str, created: datetime) -> None:
        (incoming / name).write_text("x\n")
        stamp = (created + timedelta(seconds=2)).timestamp()
        os.utime(incoming / name, (stamp, stamp))

    def data_runs() -> list[dict]:
        found = [obj.raw for (resource, _, _), obj in cluster.objects.items()
                 if resource.plural == "pipelineruns" and not obj.deleted]
        return sorted(found, key=lambda r: r["metadata"]["creationTimestamp"])

    def manifest(run: dict) -> list[str]:
        return [os.path.basename(line) for line in open(run["spec"]["steps"][0]["container"]["command"][1])
                .read().split()]

    async with operator(schedule_clock=clock):
        created = parse_time((await create(kube, body))["metadata"]["creationTimestamp"])
        await eventually(lambda: status(cluster, "arrivals").get("lastPollTime"))
        arrive("a.csv", created)
        arrive("b.csv", created)
        clock.move(2 * MIN)
        await eventually(lambda: len(data_runs()) == 1, timeout=20)
        first = data_runs()[0]["metadata"]["name"]
        handed = [manifest(data_runs()[0])]
        await eventually(lambda: cluster.get("jobs", f"{first}-report"), timeout=20)
        await kubelet.job_condition(f"{first}-report", "Failed", "BackoffLimitExceeded", failed=1)
        await eventually(lambda: events(cluster, "FilesGivenBack"), timeout=20)
        await eventually(lambda: len(status(cluster, "arrivals").get("watermark", {}).get("again", [])) == 2)
        assert [str(v) for v in schema.validate(cluster.get("pipelineschedules", "arrivals"))] == []  # not pruned
    async with operator(schedule_clock=clock):  # a restart: its first poll offers the files given back
        await eventually(lambda: runs(cluster) and first not in runs(cluster), timeout=20)
        [second] = runs(cluster)  # failedRunsHistoryLimit 0: the failed run went once its files were given back
        handed.append(manifest(data_runs()[0]))
        await set_phase(cluster, kubelet, second, "Succeeded")
        arrive("c.csv", created)
        clock.move(2 * MIN)
        await eventually(lambda: len(runs(cluster)) == 2, timeout=20)
        third = next(r for r in runs(cluster) if r != second)
        handed.append(manifest(cluster.get("pipelineruns", third)))
        await set_phase(cluster, kubelet, third, "Succeeded")
        clock.move(2 * MIN)
        polled = status(cluster, "arrivals").get("lastPollTime")
        await eventually(lambda: status(cluster, "arrivals").get("lastPollTime") != polled, timeout=20)
    assert handed == [["a.csv", "b.csv"], ["a.csv", "b.csv"], ["c.csv"]]
    assert len(events(cluster, "FilesGivenBack")) == 1 and sorted(runs(cluster)) == sorted([second, third])
    assert status(cluster, "arrivals")["watermark"]["again"] == []
