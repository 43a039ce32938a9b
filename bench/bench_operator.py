"""The operator at scale: planning a million files, creation-to-Job latency, a burst of resources.

Target: planning 1,000,000 files (local or `memory://`) into a plan in under 20 s and
under 1 GiB of memory; from resource creation to the scoring Job existing in under 1 s
for a small input on the emulator; 200 resources created at once all reach Running.

Method, in three parts (`--only` picks one; all three by default):

  planning  `--files` small files (16 bytes each, `--per-folder` to a sub-folder) are
            made once in a local folder under `--workdir`, kept for reuse. Each case
            runs in a fresh process: `local` plans that folder, `memory` first fills
            fsspec's `memory://` with the same names and sizes, then plans it. The
            process times `parallelrun.operator.jobs.planning.plan_run(spec, run_id, {})`,
            exactly as the operator's planner thread calls it (list, cut into
            mini-batches of `--batch` files, shard over `--nodes`, write the plan to the
            output's work directory), with a spec made by `load_spec` from a minimal
            files resource. Memory: the process's resident set just before planning and
            its peak during planning (Linux VmHWM, reset through /proc/self/clear_refs
            just before; where that is refused the peak counts from process start, an
            upper bound). The target is judged on what planning adds (peak - before);
            the process's whole peak is printed too (for `memory` it holds the input
            itself). As a reference on a noisy machine, the same process then lists the
            same input bare (local: a recursive os.scandir with each entry's size;
            memory: one pass over the store), sorted, and with fsspec's find(detail=True)
            as the planner does: "planning took N x the bare listing". The local folder
            is listed once, untimed, before the runs, so every run meets a warm cache.
            Runs are `--repeat`ed and the fastest kept.

  latency   kmock's Kubernetes emulator and the real kopf operator, started as the
            operator tests do (tests/operator: the harness's Cluster and CRDs, the
            operator in a thread with its own event loop, the fixture's settings). After
            one untimed warm-up, `--resources` BatchInferenceJobs over the same 10-file
            folder are created one after another: the time from the create call
            returning until `cluster.get("jobs", "<name>-score")` exists, polled every
            5 ms. The API calls of the median resource are printed as a timeline.

  burst     a fresh emulator and operator; `--burst` resources created at once
            (asyncio.gather of the create calls), each with its own output folder over
            the shared 10-file input, then polled every 20 ms until every one has
            status.phase Running, or `--timeout`. Per resource: from its create call
            returning to Running seen; in all: from the burst's start to the last one.

The emulator, the operator and the polling share one process (and its GIL), as in the
operator tests, so the figures include the emulator's own work. kmock keeps every
request it served and routes each new one by filtering that whole history, so every
call costs more than the one before (20 resources in a row: 40 ms growing to 250 ms;
a burst of 200: 29 Running after 300 s). The bench therefore drops each request from
kmock's history once it is served; `--kmock-history` keeps kmock as the tests run it.
kopf's logs go to `<workdir>/operator.log`.

    python bench/bench_operator.py                               # all three parts
    python bench/bench_operator.py --only planning --files 100000
    python bench/bench_operator.py --only latency --resources 50
    python bench/bench_operator.py --only burst --burst 200
    python bench/bench_operator.py --only latency --kmock-history   # the emulator as the tests run it

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "operator"))

TARGET_PLAN_SECONDS = 20.0
TARGET_PLAN_MIB = 1024
TARGET_LATENCY_SECONDS = 1.0


# -- planning: the input -------------------------------------------------------


def file_name(i: int, per_folder: int) -> str:
    return f"d{i // per_folder:04d}/part-{i:07d}.bin"


def file_bytes(i: int) -> bytes:
    return b"%015d\n" % i


def ensure_local_files(workdir: Path, files: int, per_folder: int) -> Path:
    """`files` small files under workdir/files-<files>/, made once (a marker says they are complete)."""
    data, marker = workdir / f"files-{files}", workdir / f"files-{files}.json"
    wanted = {"files": files, "per_folder": per_folder}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"reusing {files:,} files in {data}")
        return data
    print(f"making {files:,} files in {data} ...", flush=True)
    marker.unlink(missing_ok=True)
    shutil.rmtree(data, ignore_errors=True)
    start = time.perf_counter()
    for i in range(files):
        path = data / file_name(i, per_folder)
        if i % per_folder == 0:
            path.parent.mkdir(parents=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, file_bytes(i))
        os.close(fd)
    marker.write_text(json.dumps(wanted))
    print(f"made in {time.perf_counter() - start:.0f} s")
    return data


def fill_memory(root: str, files: int, per_folder: int) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(files):
        fs.pipe_file(f"{root}/{file_name(i, per_folder)}", file_bytes(i))


def bare_listing(uri: str) -> int:
    """The input's (relative path, size) pairs, sorted, with nothing but the standard library
    (local) or the store's own dict (memory); the count."""
    if uri.startswith("memory://"):
        from fsspec.implementations.memory import MemoryFileSystem

        prefix = "/" + uri.removeprefix("memory://").strip("/") + "/"
        found = [(name[len(prefix):], f.size) for name, f in MemoryFileSystem.store.items() if name.startswith(prefix)]
    else:
        found, stack = [], [uri.rstrip("/")]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        found.append((entry.path[len(uri):], entry.stat(follow_symlinks=False).st_size))
    found.sort()
    return len(found)


def fsspec_listing(uri: str) -> int:
    from parallelrun.runner.storage import filesystem

    fs, root = filesystem(uri, {})
    return len(fs.find(root, detail=True))


# -- planning: one measurement, in a process of its own --------------------------


def files_spec(input_uri: str, output_uri: str, batch: int, nodes: int):
    from parallelrun.runner.spec import load_spec

    return load_spec({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                      "metadata": {"name": "bench", "namespace": "ns"},
                      "spec": {"input": {"uri": input_uri, "type": "files"}, "code": {"entryScript": "score.py"},
                               "output": {"uri": output_uri}, "miniBatchSize": batch, "nodeCount": nodes}})


def proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak() -> None:
    """Start VmHWM again from the current resident set (Linux >= 4.0); else it counts from start."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def measure_planning(uri: str, out: str, files: int, per_folder: int, batch: int, nodes: int) -> dict:
    """plan_run's time and memory, then the reference listings (the child's whole job)."""
    from parallelrun.operator.jobs.planning import plan_run

    if uri.startswith("memory://"):
        fill_memory(uri.removeprefix("memory://").rstrip("/"), files, per_folder)
    spec = files_spec(uri, out, batch, nodes)
    gc.collect()
    before = proc_status_kib("VmRSS")
    reset_peak()
    seconds, plan = timed(plan_run, spec, "bench-00000000", {})
    peak = proc_status_kib("VmHWM")
    mini_batches = plan.total_mini_batches
    del plan
    gc.collect()
    bare_seconds, bare_count = timed(bare_listing, uri)
    find_seconds, find_count = timed(fsspec_listing, uri)
    return {"seconds": seconds, "before_mib": before / 1024, "peak_mib": peak / 1024,
            "mini_batches": mini_batches, "bare_seconds": bare_seconds, "bare_files": bare_count,
            "find_seconds": find_seconds, "find_files": find_count}


def run_measurement(uri: str, out: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure-planning", uri, out,
           "--files", str(args.files), "--per-folder", str(args.per_folder),
           "--batch", str(args.batch), "--nodes", str(args.nodes)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return json.loads(done.stdout.splitlines()[-1])


def planning_mib(r: dict) -> float:
    return r["peak_mib"] - r["before_mib"]


def planning_part(args: argparse.Namespace, workdir: Path) -> list[tuple[str, bool]]:
    data = ensure_local_files(workdir, args.files, args.per_folder)
    warm = timed(bare_listing, f"{data}/")[0]
    print(f"warm-up listing of {data}: {warm:.1f} s (untimed)")
    out = workdir / "plan-out"
    cases = {"local": (f"{data}/", f"{out}/"), "memory": ("memory://bench-in/", "memory://bench-out/")}
    expected, summary = math.ceil(args.files / args.batch), []
    for case, (uri, out_uri) in cases.items():
        runs = []
        for i in range(args.repeat):
            shutil.rmtree(out, ignore_errors=True)
            r = run_measurement(uri, out_uri, args)
            runs.append(r)
            if (r["mini_batches"], r["bare_files"], r["find_files"]) != (expected, args.files, args.files):
                sys.exit(f"{case}: planned {r['mini_batches']:,} mini-batches, listed {r['bare_files']:,} and "
                         f"{r['find_files']:,} files; expected {expected:,} of {args.files:,} files")
            print(f"planning {case:<6} run {i + 1}: plan_run {r['seconds']:6.2f} s, +{planning_mib(r):5.0f} MiB "
                  f"(RSS {r['before_mib']:.0f} MiB before, peak {r['peak_mib']:.0f} MiB); bare listing "
                  f"{r['bare_seconds']:.2f} s ({r['seconds'] / r['bare_seconds']:.1f}x), fsspec find "
                  f"{r['find_seconds']:.2f} s", flush=True)
        best = min(runs, key=lambda r: r["seconds"])
        ok_time, ok_memory = best["seconds"] < TARGET_PLAN_SECONDS, planning_mib(best) < TARGET_PLAN_MIB
        summary.append((f"planning {case:<6} {args.files:,} files -> {best['mini_batches']:,} mini-batches, "
                        f"{args.nodes} shards: {best['seconds']:.2f} s (target < {TARGET_PLAN_SECONDS:.0f} s; "
                        f"{best['seconds'] / best['bare_seconds']:.1f}x the bare listing, "
                        f"{best['seconds'] / best['find_seconds']:.1f}x fsspec find)", ok_time))
        summary.append((f"planning {case:<6} memory: +{planning_mib(best):.0f} MiB during planning, process peak "
                        f"{best['peak_mib']:.0f} MiB (target < {TARGET_PLAN_MIB} MiB added)", ok_memory))
    shutil.rmtree(out, ignore_errors=True)
    return summary


# -- latency and burst: the operator on the emulator ---------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed_cluster_class():
    """The harness's Cluster, noting when each API call other than a watch arrived, and (unless
    told to keep it) forgetting each request once served: kmock keeps every request and, to route
    a new one, scans that whole history, which makes every API call slower than the one before."""
    import attrs
    import kmock
    from operator_harness import Cluster

    @attrs.define(kw_only=True)
    class TimedCluster(Cluster):
        keep_history: bool = False
        calls: list = attrs.field(factory=list, init=False)  # (perf_counter, method, path)

        async def _handle(self, request):
            if request.action is not None and request.action != kmock.action.WATCH:
                self.calls.append((time.perf_counter(), request.method.value, request.url.path))
            try:
                return await super()._handle(request)
            finally:
                if not self.keep_history:
                    self._forget(request)

        def _forget(self, request) -> None:
            history = self._requests  # kmock's own list, newest last
            for i in range(len(history) - 1, -1, -1):
                if history[i] is request:
                    del history[i]
                    return

    return TimedCluster


@contextlib.asynccontextmanager
async def emulated_cluster(keep_history: bool):
    """The emulator with the built-in kinds and the project's CRDs, as the operator tests' fixture,
    and a client logged in to it."""
    import kmock
    import kopf
    import yaml
    from operator_harness import crd_resource_info

    from parallelrun.operator.kit.kube import KubeApi

    async with timed_cluster_class()(keep_history=keep_history) as cluster, kmock.Server(cluster):
        cluster.resources.load_bundled()
        for crd_file in sorted((ROOT / "crds").glob("*.yaml")):
            key, info = crd_resource_info(yaml.safe_load(crd_file.read_text()))
            cluster.resources[key] = info
        api = KubeApi()
        await api.connect(kopf.ConnectionInfo(server=str(cluster.url)))
        try:
            yield cluster, api
        finally:
            await api.close()


@contextlib.asynccontextmanager
async def running_operator(cluster):
    """The real operator in a thread with its own event loop, as the operator tests run it."""
    import kopf
    from operator_harness import IMAGE

    from parallelrun.operator import handlers  # noqa: F401  (registers the handlers with kopf)

    stop, ready = threading.Event(), threading.Event()
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1  # as the tests' fixture
    thread = threading.Thread(name="operator", daemon=True, target=kopf.run, kwargs={
        "clusterwide": True, "standalone": True, "stop_flag": stop, "ready_flag": ready, "settings": settings,
        "memo": kopf.Memo(connection=kopf.ConnectionInfo(server=str(cluster.url)), default_image=IMAGE)})
    thread.start()
    if not await asyncio.to_thread(ready.wait, 30):
        sys.exit("the operator did not start")
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)


def small_input(workdir: Path) -> str:
    data = workdir / "small-input"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(10):
        (data / f"item-{i:02d}.txt").write_text(f"item {i}\n")
    return f"{data}/"


async def create_resource(api, name: str, input_uri: str, out: Path) -> float:
    """Create a BatchInferenceJob (the harness's test resource); when the call returned."""
    from operator_harness import create, resource

    await create(api, resource(name, {"input": input_uri, "output": f"{out / name}/"}))
    return time.perf_counter()


async def until(check, interval: float, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def latency_run(args: argparse.Namespace, workdir: Path) -> tuple[list[float], list[tuple], float]:
    """Seconds from each create returning to its scoring Job; the median one's API calls; the warm-up's."""
    input_uri, out = small_input(workdir), workdir / "latency-out"
    shutil.rmtree(out, ignore_errors=True)
    async with emulated_cluster(args.kmock_history) as (cluster, api), running_operator(cluster):
        latencies, timelines = [], []
        for i in range(args.resources + 1):
            name = f"lat-{i:03d}"
            first_call = len(cluster.calls)
            created = await create_resource(api, name, input_uri, out)
            if not await until(lambda: cluster.get("jobs", f"{name}-score") is not None, 0.005, 30):
                sys.exit(f"{name}: no scoring Job within 30 s")
            latencies.append(time.perf_counter() - created)
            timelines.append([(t - created, method, path) for t, method, path in cluster.calls[first_call:]])
    warm_up, latencies, timelines = latencies[0], latencies[1:], timelines[1:]
    median_index = sorted(range(len(latencies)), key=latencies.__getitem__)[len(latencies) // 2]
    return latencies, timelines[median_index], warm_up


def latency_part(args: argparse.Namespace, workdir: Path) -> list[tuple[str, bool]]:
    latencies, timeline, warm_up = asyncio.run(latency_run(args, workdir))
    print(f"latency: warm-up resource {warm_up:.3f} s; API calls of the median resource "
          f"(ms from its create call returning):")
    for offset, method, path in timeline:
        print(f"  {1000 * offset:+8.1f}  {method:<6} {path}")
    print("latency: all, ms: " + ", ".join(f"{1000 * s:.0f}" for s in latencies))
    worst = max(latencies)
    return [(f"latency  create -> scoring Job, {len(latencies)} resources one after another: median "
             f"{statistics.median(latencies):.3f} s, p95 {percentile(latencies, 0.95):.3f} s, max {worst:.3f} s "
             f"(target: every one < {TARGET_LATENCY_SECONDS:.0f} s)", worst < TARGET_LATENCY_SECONDS)]


def phases(cluster) -> dict[str, str | None]:
    from parallelrun.runner.api import BATCH_INFERENCE_JOB
    PLURAL = BATCH_INFERENCE_JOB.plural

    return {name: (obj.raw.get("status") or {}).get("phase")
            for (resource, _, name), obj in cluster.objects.items() if resource.plural == PLURAL and not obj.deleted}


async def burst_run(args: argparse.Namespace, workdir: Path) -> tuple[float, dict[str, float], dict[str, float]]:
    """The burst's start; when each create returned; when each was first seen Running."""
    input_uri, out = small_input(workdir), workdir / "burst-out"
    shutil.rmtree(out, ignore_errors=True)
    names = [f"burst-{i:04d}" for i in range(args.burst)]
    running: dict[str, float] = {}

    def all_running() -> bool:
        now = time.perf_counter()
        for name, phase in phases(cluster).items():
            if phase == "Running":
                running.setdefault(name, now)
        return len(running) == len(names)

    async with emulated_cluster(args.kmock_history) as (cluster, api), running_operator(cluster):
        start = time.perf_counter()
        created = dict(zip(names, await asyncio.gather(*(create_resource(api, n, input_uri, out) for n in names))))
        await until(all_running, 0.02, args.timeout)
    return start, created, running


def burst_part(args: argparse.Namespace, workdir: Path) -> list[tuple[str, bool]]:
    start, created, running = asyncio.run(burst_run(args, workdir))
    print(f"burst: {args.burst} creates returned within {max(created.values()) - start:.2f} s")
    per_resource = [running[n] - created[n] for n in running]
    if not per_resource:
        return [(f"burst    0/{args.burst} reached Running within {args.timeout:.0f} s", False)]
    total = max(running.values()) - start
    return [(f"burst    {len(running)}/{args.burst} reached Running, the last {total:.2f} s after the burst "
             f"began; per resource (create -> Running) p50 {percentile(per_resource, 0.5):.2f} s, p95 "
             f"{percentile(per_resource, 0.95):.2f} s, max {max(per_resource):.2f} s "
             f"(target: all {args.burst} Running)", len(running) == args.burst)]


# -- main ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("planning", "latency", "burst"), help="one part (default: all)")
    parser.add_argument("--workdir", type=Path, help="default: a folder under the system's temp dir, kept for reuse")
    parser.add_argument("--files", type=int, default=1_000_000, help="planning: input files (default 1,000,000)")
    parser.add_argument("--per-folder", type=int, default=10_000, help="planning: files per sub-folder (10,000)")
    parser.add_argument("--batch", type=int, default=1, help="planning: miniBatchSize (default 1, the spec's)")
    parser.add_argument("--nodes", type=int, default=4, help="planning: nodeCount (default 4)")
    parser.add_argument("--repeat", type=int, default=2, help="planning: runs of each case (default 2)")
    parser.add_argument("--resources", type=int, default=20, help="latency: resources, one after another (20)")
    parser.add_argument("--burst", type=int, default=200, help="burst: resources created at once (200)")
    parser.add_argument("--timeout", type=float, default=300, help="burst: seconds to wait for Running (300)")
    parser.add_argument("--kmock-history", action="store_true",
                        help="latency, burst: let kmock keep (and scan) every request, as in the operator tests")
    parser.add_argument("--measure-planning", nargs=2, metavar=("URI", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_planning:
        print(json.dumps(measure_planning(*args.measure_planning, args.files, args.per_folder, args.batch,
                                          args.nodes)))
        return

    workdir = (args.workdir or Path(tempfile.gettempdir()) / "parallelrun-bench-operator").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=workdir / "operator.log", filemode="w", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the emulator's, one line per request
    parts = {"planning": planning_part, "latency": latency_part, "burst": burst_part}
    summary = []
    for name, part in parts.items():
        if args.only in (None, name):
            summary += part(args, workdir)
    print(f"\nsummary ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}):")
    for line, ok in summary:
        print(f"{'PASS' if ok else 'MISS'}  {line}")


if __name__ == "__main__":
    main()
