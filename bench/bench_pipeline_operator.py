"""The PipelineRun controller's reaction time: a step's child made after its dependency succeeded.

Target: on the emulator, a step's child is created within 1 s of its
dependencies succeeding.

Method: kmock's Kubernetes emulator and the real kopf operator, started as
bench/bench_operator.py starts them (its `emulated_cluster` and `running_operator`:
the operator in a thread with its own event loop, kmock's request history dropped as
each request is served, `--kmock-history` keeps it). After one untimed warm-up run,
`--runs` PipelineRuns of three container steps a -> b -> c are created one after
another. For each run the bench plays the Job controller: once `<run>-a` exists it
sets that Job's Complete condition, and times from that status patch returning until
`<run>-b` exists (polled every 5 ms); the same from b to c. Those are the figures
judged against the target. In the same runs, as a baseline, the time from the
PipelineRun's create call returning to its first child `<run>-a` existing, which
has no step succeeding in it: "step-to-step / creation-to-first-child" is the share
a dependency's success adds. Each run's workdir is its own folder (no reuse between runs).

    python bench/bench_pipeline_operator.py                 # 20 runs
    python bench/bench_pipeline_operator.py --runs 50 --kmock-history

Run by hand; never part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_operator import emulated_cluster, percentile, running_operator

TARGET_SECONDS = 1.0
NAMESPACE = "ns"


def pipeline(name: str, workdir: str) -> dict:
    steps = [{"name": "a", "container": {"image": "busybox", "command": ["echo", name, "a"]}},
             {"name": "b", "dependsOn": ["a"], "container": {"image": "busybox", "command": ["echo", name, "b"]}},
             {"name": "c", "dependsOn": ["b"], "container": {"image": "busybox", "command": ["echo", name, "c"]}}]
    return {"apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"workdir": workdir, "steps": steps}}


async def appears(cluster, kind: str, name: str, timeout: float = 30.0) -> float:
    """Seconds until `name` exists, polled every 5 ms."""
    start = time.perf_counter()
    while cluster.get(kind, name) is None:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{kind} {name} did not appear within {timeout:.0f} s")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start


async def one_run(cluster, api, name: str, workdir: str) -> tuple[float, list[float]]:
    """(creation to first child, [a succeeded to b's Job, b succeeded to c's Job])."""
    from parallelrun.operator.kit.kube import path

    await api.create(path("parallelrun.dev/v1alpha1", "pipelineruns", NAMESPACE), pipeline(name, workdir))
    first = await appears(cluster, "jobs", f"{name}-a")
    after = []
    for done, following in (("a", "b"), ("b", "c")):
        await api.merge_patch(path("batch/v1", "jobs", NAMESPACE, f"{name}-{done}", "status"), {"status": {
            "succeeded": 1, "conditions": [{"type": "Complete", "status": "True", "reason": "Completed"}]}})
        after.append(await appears(cluster, "jobs", f"{name}-{following}"))
    return first, after


async def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[float], list[float]]:
    firsts, steps = [], []
    async with emulated_cluster(args.kmock_history) as (cluster, api), running_operator(cluster):
        await one_run(cluster, api, "warm-up", str(workdir / "warm-up"))
        for i in range(args.runs):
            first, after = await one_run(cluster, api, f"run-{i:03d}", str(workdir / f"run-{i:03d}"))
            firsts.append(first)
            steps.extend(after)
    return firsts, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed PipelineRuns (default 20)")
    parser.add_argument("--kmock-history", action="store_true", help="keep kmock's request history, as the tests do")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        logging.basicConfig(filename=str(Path(folder) / "operator.log"), level=logging.INFO)
        firsts, steps = asyncio.run(measure(args, Path(folder)))
    median, baseline = statistics.median(steps), statistics.median(firsts)

    def ms(x: float) -> str:
        return f"{x * 1000:.0f} ms"

    print(f"step succeeded -> next step's Job, {len(steps)} steps in {args.runs} runs: median {ms(median)}, "
          f"p90 {ms(percentile(steps, 0.9))}, max {ms(max(steps))} (target < {TARGET_SECONDS:.0f} s)")
    print(f"baseline, PipelineRun created -> first step's Job: median {ms(baseline)}, "
          f"p90 {ms(percentile(firsts, 0.9))}, max {ms(max(firsts))}")
    print(f"ratio step-to-step / creation-to-first-child (medians): {median / baseline:.2f}")
    ok = max(steps) < TARGET_SECONDS
    print("PASS" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
