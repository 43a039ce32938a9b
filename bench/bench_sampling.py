"""The CPU the run report's resource sampling costs a pod (runner/sampling.py), against its
target: under 1% of one core.

`--workers` sleeping child processes (default 8) stand for a pod's workers. First, one
sample of them all is timed (CPU seconds of the sampling thread, `time.thread_time`),
`--samples` times, and a piece of `--minutes` of samples written as the sampler writes
it every WRITE_SECONDS (its growing piece rewritten whole); the cost per second is
sample / SAMPLE_SECONDS + write / WRITE_SECONDS. Then the sampler runs for real on its
thread for `--seconds` at `--interval`, and its own CPU seconds over the wall time are
scaled to SAMPLE_SECONDS. With nvidia-ml-py and a GPU, each worker is given a device
and NVML's queries are in both figures.

    python bench/bench_sampling.py
    python bench/bench_sampling.py --workers 16 --seconds 30

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from parallelrun.runner import sampling
from parallelrun.runner.layout import Layout
from parallelrun.runner.storage import filesystem

TARGET = 0.01  # of one core


def thread_seconds(call, repeat: int) -> float:
    """CPU seconds of this thread per call of `call`, the median of `repeat` timings."""
    times = []
    for _ in range(repeat):
        began = time.thread_time()
        call()
        times.append(time.thread_time() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=60.0, help="of samples in the piece written")
    parser.add_argument("--seconds", type=float, default=20.0, help="of sampling on its thread")
    parser.add_argument("--interval", type=float, default=0.5, help="between samples on its thread")
    args = parser.parse_args()
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]) for _ in range(args.workers)]
    nvml = sampling.Nvml.load()
    gpus = nvml.count if nvml is not None else 0
    processes = [(k, p.pid, str(k % gpus) if gpus else None) for k, p in enumerate(children)]
    fs, root = filesystem(tempfile.mkdtemp(prefix="parallelrun-bench-sampling-"))
    layout = Layout(root, "bench-0123456789")
    try:
        sampler = sampling.ResourceSampler(fs, layout, 0, "bench", "token", lambda: processes, nvml)
        per_sample = thread_seconds(sampler.sample, args.samples)
        samples = int(args.minutes * 60 / sampling.SAMPLE_SECONDS)
        sampler._lines = sampler._lines[:1] * samples  # a piece of `--minutes` of samples
        sampler._bytes = sum(map(len, sampler._lines))
        per_write = thread_seconds(sampler._write, 20)
        share = per_sample / sampling.SAMPLE_SECONDS + per_write / sampling.WRITE_SECONDS

        running = sampling.ResourceSampler(fs, layout, 1, "bench", "token", lambda: processes, nvml,
                                           interval=args.interval)
        began = time.monotonic()
        running.start()
        time.sleep(args.seconds)
        running.stop()
        wall = time.monotonic() - began
        measured = running.cpu_seconds / wall * args.interval / sampling.SAMPLE_SECONDS
    finally:
        for child in children:
            child.kill()
            child.wait()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.workers} workers + the pod's own "
          f"{gpus} GPU(s) through NVML")
    print(f"one sample: {per_sample * 1e3:.3f} ms CPU; a piece of {args.minutes:g} min ({sampler._bytes / 1024:.0f} KiB) "
          f"written: {per_write * 1e3:.2f} ms CPU")
    print(f"sampling every {sampling.SAMPLE_SECONDS:g} s, writing every {sampling.WRITE_SECONDS:g} s: "
          f"{share * 100:.4f}% of one core (from the timings)")
    print(f"on its thread, {args.seconds:g} s every {args.interval:g} s: {running.cpu_seconds:.3f} CPU s over "
          f"{wall:.1f} s, scaled to every {sampling.SAMPLE_SECONDS:g} s: {measured * 100:.4f}% of one core")
    worst = max(share, measured)
    print(f"target < {TARGET * 100:g}% of one core: {'PASS' if worst < TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
