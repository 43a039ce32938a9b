"""PipelineSchedules at scale: N schedules with minute slots kept on time by one operator (issue 8, Speed).

Target: 1,000 schedules of `* * * * *`, every run created within 2 s of its slot.

Method: kmock's emulator and the real kopf operator in one process, as bench_operator.py
starts them (its `emulated_cluster`, forgetting each served request, and
`running_operator`). `--schedules` PipelineSchedules (concurrencyPolicy Allow, a
one-step template) are created, 50 at a time, starting just after a minute boundary
(so that no slot passes while they are created and the measured slots are alike); once
every one has status.handledUntil (its loop is running), the bench waits for `--slots`
minute boundaries plus `--grace` seconds. Each run's lag is its creationTimestamp, set by the emulator when
the create call arrives, minus its slot (the parallelrun.dev/scheduled-time
annotation). Printed: runs expected and found, lag median / p99 / max, and how many
were created within 2 s. The emulator, the operator and the bench share one process
and its GIL, so the figure includes the emulator's own work.

kmock finds the object of a get, patch or create by scanning every object it holds
(runs, Jobs, ConfigMaps and Events pile up: a minute of 1,000 schedules adds thousands),
so each call costs more than the one before. By default the bench looks objects up by
key instead, as an API server does; `--kmock-scan` keeps kmock's scan. `--floor` measures
the emulator alone: `--schedules` PipelineRuns created at once, no operator, the time
until each create was served.

    python bench/bench_schedules.py                       # 1,000 schedules, 2 slots
    python bench/bench_schedules.py --schedules 100 --slots 1
    python bench/bench_schedules.py --floor               # 1,000 creates, the emulator alone

Run by hand; never part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_operator  # noqa: E402
from bench_operator import emulated_cluster, percentile, running_operator  # noqa: E402

NAMESPACE = "ns"
API = "parallelrun.dev/v1alpha1"


def schedule(i: int) -> dict:
    return {"apiVersion": API, "kind": "PipelineSchedule", "metadata": {"name": f"s{i:05d}", "namespace": NAMESPACE},
            "spec": {"schedule": {"cron": "* * * * *"}, "concurrencyPolicy": "Allow",
                     "template": {"spec": {"workdir": "/tmp/bench-work/", "steps": [{"name": "echo", "container": {
                         "image": "busybox", "command": ["echo", "${{schedule.scheduledTime}}"]}}]}}}}


def stored(cluster, plural: str) -> list[dict]:
    return [obj.raw for (resource, _, _), obj in list(cluster.objects.items())
            if resource.plural == plural and not obj.deleted]


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def keyed_lookups() -> None:
    """Make the bench's emulator find one object by its key, not by scanning all of them."""
    scanning = bench_operator.timed_cluster_class()

    class KeyedCluster(scanning):
        def _KubernetesEmulator__get_objs(self, request, strict: bool) -> list:
            if strict and request.resource is not None and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                return [self._objects[key]] if key in self._objects else []
            return super()._KubernetesEmulator__get_objs(request, strict)

    bench_operator.timed_cluster_class = lambda: KeyedCluster


def summary(lags: list[float]) -> str:
    return (f"median {statistics.median(lags):.2f} s, p99 {percentile(lags, 0.99):.2f} s, "
            f"max {max(lags):.2f} s")


async def floor(args: argparse.Namespace) -> int:
    """The emulator alone: N runs created at once, as the operator's create calls would be."""
    from parallelrun.operator.kube import path
    from parallelrun.runner.schedules.runs import build_run
    from parallelrun.runner.schedules.spec import load_schedule

    slot = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    bodies = []
    for i in range(args.schedules):
        body = build_run(load_schedule(schedule(i)), f"s{i:05d}-floor", slot, "schedule")
        body["metadata"]["namespace"] = NAMESPACE
        bodies.append(body)
    async with emulated_cluster(False) as (_, api):
        started = time.perf_counter()

        async def create(body: dict) -> float:
            await api.create(path(API, "pipelineruns", NAMESPACE), body)
            return time.perf_counter() - started

        done = await asyncio.gather(*(create(b) for b in bodies))
    print(f"emulator alone: {args.schedules} PipelineRuns created at once, served after: {summary(done)}")
    return 0


async def run(args: argparse.Namespace) -> int:
    from parallelrun.operator.kube import path

    async with emulated_cluster(False) as (cluster, api), running_operator(cluster):
        await asyncio.sleep((61 - time.time() % 60) % 60)
        started = time.monotonic()
        for first in range(0, args.schedules, 50):
            await asyncio.gather(*(api.create(path(API, "pipelineschedules", NAMESPACE), schedule(i))
                                   for i in range(first, min(first + 50, args.schedules))))
        while sum(bool((s.get("status") or {}).get("handledUntil")) for s in stored(cluster, "pipelineschedules")) \
                < args.schedules:
            await asyncio.sleep(0.2)
        ready = datetime.now(timezone.utc)
        print(f"{args.schedules} schedules created and running in {time.monotonic() - started:.1f} s")
        first_slot = ready.replace(second=0, microsecond=0).timestamp() + 60
        end = first_slot + 60 * (args.slots - 1) + args.grace
        calls_before = len(cluster.calls)
        await asyncio.sleep(end - time.time())
        calls = collections.Counter(f"{method} {'/'.join(p.split('/')[-3:-1]) if method != 'POST' else p.split('/')[-1]}"
                                    for _, method, p in cluster.calls[calls_before:])
        lags = []
        for r in stored(cluster, "pipelineruns"):
            slot = parse(r["metadata"]["annotations"]["parallelrun.dev/scheduled-time"])
            if slot.timestamp() >= first_slot:
                lags.append((parse(r["metadata"]["creationTimestamp"]) - slot).total_seconds())
    print("API calls while measured: " + ", ".join(f"{n} {k}" for k, n in calls.most_common(6)))
    expected = args.schedules * args.slots
    within = sum(lag <= 2.0 for lag in lags)
    print(f"runs: {len(lags)} of {expected} expected; created within 2 s of the slot: {within} "
          f"({100 * within / max(expected, 1):.1f}%)")
    if lags:
        print(f"lag from slot to creation: {summary(lags)}")
    return 0 if len(lags) == expected and within == expected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=2, help="minute slots to measure (default 2)")
    parser.add_argument("--grace", type=float, default=20, help="seconds to wait after the last slot (default 20)")
    parser.add_argument("--kmock-scan", action="store_true", help="keep kmock's scan of every object per call")
    parser.add_argument("--floor", action="store_true", help="only the emulator: --schedules creates at once")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, filename="/tmp/bench-schedules-operator.log")
    if not args.kmock_scan:
        keyed_lookups()
    print(f"emulator: {'kmock scanning every object' if args.kmock_scan else 'objects looked up by key'}")
    return asyncio.run(floor(args) if args.floor else run(args))


if __name__ == "__main__":
    sys.exit(main())
