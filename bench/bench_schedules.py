"""PipelineSchedules at scale: N schedules with minute slots kept on time by one operator.

Target: 1,000 schedules of `* * * * *`, the slowest run created within the emulator's own floor
(its slowest of as many creates at once, no operator: measured in the same run, before each
round) + 1 s.

Method: three processes, as in a cluster. kmock's emulator serves the API in a process
of its own (bench_operator.py's `emulated_cluster`, forgetting each served request), the
real kopf operator runs in another and talks to it over HTTP like to an API server, and
this process drives and measures through the same API. Each round starts both afresh:
`--schedules` PipelineSchedules (concurrencyPolicy Allow, a one-step template) are
created, 50 at a time, starting just after a minute boundary (so that no slot passes
while they are created and the measured slots are alike); once every one has
status.handledUntil (its loop is running), the round waits for `--slots` minute
boundaries plus `--grace` seconds. Each run's lag is its creationTimestamp, set by the
emulator when the create call arrives, minus its slot (the parallelrun.dev/scheduled-time
annotation). Printed per round: runs expected and found, lag median / p99 / max, how many
were created within 2 s, the CPU seconds the operator and the emulator used from the first
slot to its last run and to the end (/proc, sampled every 0.1 s), the API calls the
operator made meanwhile, and the load average.

`--before COMMIT` runs the operator of an earlier commit (bench/earlier.py) in alternate
rounds, with the same emulator and driver: both sets of rounds meet the same machine.
`--profile [SECONDS]` samples the operator's threads with py-spy for SECONDS (3) from the first
slot (`pip install py-spy`), writing collapsed stacks (/tmp/bench-schedules/round-N.txt) and the
top functions of each thread.

kmock finds the object of a get, patch or create by scanning every object it holds, and
routes each request by passing every request in flight through each reaction's filters,
so each call costs more than the one before and more the more calls are in flight. By
default the emulator looks objects up by key and routes a request by its own fields, as an
API server does; `--kmock-scan` keeps kmock's scans. `--floor`
measures the emulator alone: `--schedules` PipelineRuns created at once by this process
over HTTP, no operator, the time until each create was served.

    python bench/bench_schedules.py                       # 1,000 schedules, 1 slot, 1 round, and the floor
    python bench/bench_schedules.py --rounds 3 --before 2bb2abb
    python bench/bench_schedules.py --schedules 100 --slots 2
    python bench/bench_schedules.py --floor               # 1,000 creates, the emulator alone

Run by hand; never part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_operator
from bench_operator import percentile
from earlier import pythonpath

NAMESPACE = "ns"
API = "parallelrun.dev/v1alpha1"
IMAGE = "example.com/scorer:1.0"  # the operator tests' default image
LOGS = Path("/tmp/bench-schedules")


def schedule(i: int) -> dict:
    return {"apiVersion": API, "kind": "PipelineSchedule", "metadata": {"name": f"s{i:05d}", "namespace": NAMESPACE},
            "spec": {"schedule": {"cron": "* * * * *"}, "concurrencyPolicy": "Allow",
                     "template": {"spec": {"workdir": "/tmp/bench-work/", "steps": [{"name": "echo", "container": {
                         "image": "busybox", "command": ["echo", "${{schedule.scheduledTime}}"]}}]}}}}


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def call_kind(method: str, url_path: str) -> str:
    """`POST pipelineruns`, `PATCH pipelineschedules/status`...: an API call by verb and resource."""
    parts = url_path.strip("/").split("/")
    rest = parts[parts.index("namespaces") + 2:] if "namespaces" in parts else parts[-1:]
    return f"{method} {rest[0]}" + (f"/{rest[2]}" if len(rest) > 2 else "")


def summary(lags: list[float]) -> str:
    return (f"median {statistics.median(lags):.2f} s, p99 {percentile(lags, 0.99):.2f} s, "
            f"max {max(lags):.2f} s")


# -- the emulator's process ------------------------------------------------------


def keyed_lookups() -> None:
    """Make the emulator find one object by its key, not by scanning all of them."""
    scanning = bench_operator.timed_cluster_class()

    class KeyedCluster(scanning):
        def _KubernetesEmulator__get_objs(self, request, strict: bool) -> list:
            if strict and request.resource is not None and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                return [self._objects[key]] if key in self._objects else []
            return super()._KubernetesEmulator__get_objs(request, strict)

    bench_operator.timed_cluster_class = lambda: KeyedCluster


def direct_routing() -> None:
    """Make kmock's routing ask whether a reaction takes a request from the request alone: its
    reactions are filters over the handler, so a request is among a reaction's requests when
    every filter of the chain accepts it; kmock finds out by filtering every request in flight."""
    from kmock._internal import dsl, rendering

    scanning = dsl.View.__contains__

    def contains(view, item) -> bool:
        if isinstance(item, rendering.Request):
            node, criteria = view, []
            while type(node) in (dsl.Filter, dsl.Priority):
                if type(node) is dsl.Filter:
                    criteria.append(node.criteria)
                node = node._source
            if isinstance(node, dsl.Root):  # a request being routed is in the handler's history
                return all(criterion(item) for criterion in criteria)
        return scanning(view, item)

    dsl.View.__contains__ = contains


async def serve_emulator(kmock_scan: bool) -> None:
    """Print the emulator's URL, then answer stdin: `mark` starts counting the API calls,
    `calls` prints those since the mark (JSON); end of input stops it."""
    if not kmock_scan:
        keyed_lookups()
        direct_routing()
    async with bench_operator.emulated_cluster(False) as (cluster, _):
        print(cluster.url, flush=True)
        mark = 0
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "mark":
                mark = len(cluster.calls)
                print("marked", flush=True)
            elif line.strip() == "calls":
                kinds = collections.Counter(call_kind(method, p) for _, method, p in cluster.calls[mark:])
                print(json.dumps(kinds.most_common()), flush=True)


class Emulator:
    """The emulator's process, seen from the driver."""

    def __init__(self, kmock_scan: bool):
        command = [sys.executable, __file__, "--serve-emulator"] + (["--kmock-scan"] if kmock_scan else [])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            sys.exit("the emulator did not start")

    def ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


# -- the operator's process --------------------------------------------------------


def serve_operator(url: str) -> None:
    """The real operator, as `parallelrun operator` runs it, logged in to the emulator; stops on SIGTERM."""
    import kopf

    from parallelrun.operator import handlers  # noqa: F401  (registers the handlers with kopf)

    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1  # as the operator tests' fixture
    kopf.run(clusterwide=True, standalone=True, settings=settings,
             memo=kopf.Memo(connection=kopf.ConnectionInfo(server=url), default_image=IMAGE,
                           local_storage=True))  # the template's workdir is a local path, as with a shared volume


@contextlib.contextmanager
def operator_process(url: str, before: str | None, log: Path):
    env = dict(os.environ, PYTHONPATH=pythonpath(before)) if before else None
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, __file__, "--serve-operator", url], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_cpu(pids: tuple[int, int], until: float, every: float = 0.1) -> list[tuple[float, float, float]]:
    """(time, CPU seconds of each of the two processes) every `every` seconds until `until`."""
    samples = []
    while time.time() < until:
        samples.append((time.time(), *(cpu_seconds(pid) for pid in pids)))
        await asyncio.sleep(every)
    return samples


def cpu_between(samples: list[tuple[float, float, float]], start: float, end: float) -> tuple[float, float]:
    """The CPU seconds each process used between two times (the samples nearest to them)."""
    first = min(samples, key=lambda s: abs(s[0] - start))
    last = min(samples, key=lambda s: abs(s[0] - end))
    return last[1] - first[1], last[2] - first[2]


def start_profile(pid: int, seconds: int, out: Path) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking", "--threads"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(collapsed: Path, n: int = 15) -> list[str]:
    """The functions most often on the stack (inclusive) and the commonest leaves, from py-spy's raw output."""
    inclusive, leaves, total = collections.Counter(), collections.Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        total += int(count)
        leaves[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    return ([f"samples {total}; inclusive:"] + [f"  {100 * c / total:5.1f}% {f}" for f, c in inclusive.most_common(n)]
            + ["leaves:"] + [f"  {100 * c / total:5.1f}% {f}" for f, c in leaves.most_common(n)])


# -- the driver ------------------------------------------------------------------------


async def listed(api, plural: str) -> list[dict]:
    from parallelrun.operator.kit.kube import path

    return (await api.get(path(API, plural, NAMESPACE))).get("items") or []


async def one_round(args: argparse.Namespace, number: int, before: str | None) -> dict:
    """Fresh emulator and operator, the schedules, `--slots` slots; the lags and the calls."""
    import kopf

    from parallelrun.operator.kit.kube import KubeApi, path

    emulator = Emulator(args.kmock_scan)
    api = KubeApi()
    await api.connect(kopf.ConnectionInfo(server=emulator.url))
    try:
        with operator_process(emulator.url, before, LOGS / f"operator-{number}.log") as operator:
            await asyncio.sleep((61 - time.time() % 60) % 60)
            started = time.monotonic()
            for first in range(0, args.schedules, 50):
                await asyncio.gather(*(api.create(path(API, "pipelineschedules", NAMESPACE), schedule(i))
                                       for i in range(first, min(first + 50, args.schedules))))
            while sum(bool((s.get("status") or {}).get("handledUntil"))
                      for s in await listed(api, "pipelineschedules")) < args.schedules:
                await asyncio.sleep(0.5)
            ready = datetime.now(timezone.utc)
            setup = time.monotonic() - started
            first_slot = ready.replace(second=0, microsecond=0).timestamp() + 60
            end = first_slot + 60 * (args.slots - 1) + args.grace
            await asyncio.sleep(max(first_slot - 2 - time.time(), 0))
            emulator.ask("mark")
            profile = None
            if args.profile:
                await asyncio.sleep(max(first_slot - time.time(), 0))
                profile = start_profile(operator.pid, args.profile, LOGS / f"round-{number}.txt")
            load = os.getloadavg()[0]
            cpu = await sample_cpu((operator.pid, emulator.process.pid), end)
            calls = json.loads(emulator.ask("calls"))
            lags, last = [], first_slot
            for r in await listed(api, "pipelineruns"):
                slot = parse(r["metadata"]["annotations"]["parallelrun.dev/scheduled-time"])
                if slot.timestamp() >= first_slot:
                    created = parse(r["metadata"]["creationTimestamp"]).timestamp()
                    lags.append(created - slot.timestamp())
                    last = max(last, created) if slot.timestamp() == first_slot else last
            if profile is not None:
                profile.wait()
    finally:
        await api.close()
        emulator.close()
    return {"code": before or "this code", "setup": setup, "lags": lags, "calls": calls, "load": load,
            "cpu_burst": cpu_between(cpu, first_slot, last), "cpu_window": cpu_between(cpu, first_slot, end),
            "burst": last - first_slot}


def report(args: argparse.Namespace, number: int, r: dict) -> None:
    expected, lags = args.schedules * args.slots, r["lags"]
    within = sum(lag <= 2.0 for lag in lags)
    print(f"round {number} ({r['code']}), load average {r['load']:.1f}: {args.schedules} schedules running "
          f"{r['setup']:.1f} s after their creation began; runs: {len(lags)} of {expected}, created within 2 s of "
          f"the slot: {within} ({100 * within / max(expected, 1):.1f}%)" + (f"; lag {summary(lags)}" if lags else ""))
    (op, emu), (op_all, emu_all) = r["cpu_burst"], r["cpu_window"]
    print(f"  CPU seconds from the first slot to its last run ({r['burst']:.2f} s): operator {op:.2f}, emulator "
          f"{emu:.2f}; to the end ({args.grace:.0f} s after the last slot): operator {op_all:.2f}, emulator {emu_all:.2f}")
    print("  operator's API calls while measured: " + ", ".join(f"{n} {k}" for k, n in r["calls"][:8]), flush=True)
    if args.profile and (LOGS / f"round-{number}.txt").exists():
        print("\n".join("  " + line for line in top_functions(LOGS / f"round-{number}.txt")), flush=True)


async def rounds(args: argparse.Namespace) -> int:
    codes = [None, args.before] if args.before else [None]
    results = []
    for number in range(1, args.rounds * len(codes) + 1):
        floor_lags = await measure_floor(args)
        print(f"floor before round {number}: the emulator alone served {args.schedules} creates at once after "
              f"{summary(floor_lags)}", flush=True)
        results.append({**await one_round(args, number, codes[(number - 1) % len(codes)]), "floor": max(floor_lags)})
        report(args, number, results[-1])
    expected, ok = args.schedules * args.slots, True
    print(f"\nsummary ({os.cpu_count()} CPUs):")
    for code in codes:
        mine = [r for r in results if r["code"] == (code or "this code")]
        within = [sum(lag <= 2.0 for lag in r["lags"]) / expected for r in mine]
        medians = [statistics.median(r["lags"]) if r["lags"] else float("nan") for r in mine]
        worst = [max(r["lags"], default=float("nan")) for r in mine]
        print(f"{code or 'this code'}: {len(mine)} rounds; within 2 s: " + ", ".join(f"{100 * w:.1f}%" for w in within)
              + "; median lag " + ", ".join(f"{m:.2f}" for m in medians) + " s; max lag "
              + ", ".join(f"{w:.2f}" for w in worst) + " s; operator CPU seconds from the slot to its last run "
              + ", ".join(f"{r['cpu_burst'][0]:.2f}" for r in mine) + "; load average "
              + ", ".join(f"{r['load']:.1f}" for r in mine) + "; the floor's max "
              + ", ".join(f"{r['floor']:.2f}" for r in mine) + " s")
        if code is None:
            ok = all(len(r["lags"]) == expected and max(r["lags"]) <= r["floor"] + 1.0 for r in mine)
    print(f"{'PASS' if ok else 'MISS'}  every run of {args.schedules} schedules created within the floor's max + 1 s "
          "of its slot")
    return 0 if ok else 1


async def measure_floor(args: argparse.Namespace) -> list[float]:
    """The emulator alone: N runs created at once over HTTP, as the operator's create calls would be;
    when each was served, in seconds from the start."""
    import kopf

    from parallelrun.operator.kit.kube import KubeApi, path
    from parallelrun.runner.schedules.runs import build_run
    from parallelrun.runner.schedules.spec import load_schedule

    slot = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    bodies = []
    for i in range(args.schedules):
        body = build_run(load_schedule(schedule(i)), f"s{i:05d}-floor", slot, "schedule")
        body["metadata"]["namespace"] = NAMESPACE
        bodies.append(body)
    emulator = Emulator(args.kmock_scan)
    api = KubeApi()
    await api.connect(kopf.ConnectionInfo(server=emulator.url))
    try:
        started = time.perf_counter()

        async def create(body: dict) -> float:
            await api.create(path(API, "pipelineruns", NAMESPACE), body)
            return time.perf_counter() - started

        done = await asyncio.gather(*(create(b) for b in bodies))
    finally:
        await api.close()
        emulator.close()
    return list(done)


async def floor(args: argparse.Namespace) -> int:
    done = await measure_floor(args)
    print(f"emulator alone: {args.schedules} PipelineRuns created at once, served after: {summary(done)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=1, help="minute slots to measure per round (default 1)")
    parser.add_argument("--grace", type=float, default=15, help="seconds to wait after the last slot (default 15)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each code (default 1)")
    parser.add_argument("--before", metavar="COMMIT", help="also an earlier commit's operator, in alternate rounds")
    parser.add_argument("--profile", type=int, metavar="SECONDS", nargs="?", const=3, default=0,
                        help=f"py-spy the operator's threads for SECONDS from the first slot (default 3; {LOGS})")
    parser.add_argument("--kmock-scan", action="store_true", help="keep kmock's scan of every object per call")
    parser.add_argument("--floor", action="store_true", help="only the emulator: --schedules creates at once")
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-operator", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    if args.serve_operator:
        logging.basicConfig(level=logging.WARNING)
        serve_operator(args.serve_operator)
        return 0
    if args.serve_emulator:
        logging.basicConfig(level=logging.WARNING, filename=LOGS / "emulator.log")
        asyncio.run(serve_emulator(args.kmock_scan))
        return 0
    print(f"emulator: {'kmock scanning' if args.kmock_scan else 'objects looked up by key, requests routed directly'}, "
          f"in its own process; operator in its own process; logs in {LOGS}")
    return asyncio.run(floor(args) if args.floor else rounds(args))


if __name__ == "__main__":
    sys.exit(main())
