"""PipelineSchedules at scale: N schedules with minute slots kept on time by one operator (issue 8, Speed).

Target: 1,000 schedules of `* * * * *`, every run created within 2 s of its slot.

Method: kmock's emulator and the real kopf operator in one process, as bench_operator.py
starts them (its `emulated_cluster`, forgetting each served request, and
`running_operator`). `--schedules` PipelineSchedules (concurrencyPolicy Allow, a
one-step template) are created, 50 at a time; once every one has status.handledUntil
(its loop is running), the bench waits for `--slots` minute boundaries plus
`--grace` seconds. Each run's lag is its creationTimestamp, set by the emulator when
the create call arrives, minus its slot (the parallelrun.dev/scheduled-time
annotation). Printed: runs expected and found, lag median / p99 / max, and how many
were created within 2 s. The emulator, the operator and the bench share one process
and its GIL, so the figure includes the emulator's own work.

    python bench/bench_schedules.py                       # 1,000 schedules, 2 slots
    python bench/bench_schedules.py --schedules 100 --slots 1

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


async def run(args: argparse.Namespace) -> int:
    from parallelrun.operator.kube import path

    async with emulated_cluster(False) as (cluster, api), running_operator(cluster):
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
        print(f"lag from slot to creation: median {statistics.median(lags):.2f} s, p99 {percentile(lags, 0.99):.2f} s, "
              f"max {max(lags):.2f} s")
    return 0 if len(lags) == expected and within == expected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=2, help="minute slots to measure (default 2)")
    parser.add_argument("--grace", type=float, default=20, help="seconds to wait after the last slot (default 20)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, filename="/tmp/bench-schedules-operator.log")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
