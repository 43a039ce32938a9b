"""I/O overlapped with compute: input on Azurite, a run() that sleeps a fixed
time per mini-batch (a stand-in for a GPU).

`--batches` mini-batches of `--files` blobs of `--size` bytes are uploaded into a new
in-memory Azurite (tests/azure/azurite.py), and copied to a local folder. Four jobs, each
`parallelrun run --fresh` with `--processes` processes, alternately, `--repeat` times:

  fetch      input on Azurite, run() returns at once: fetching alone (and the fixed costs)
  compute    input on the local disk, run() sleeps `--sleep` s: computing alone
  overlap    input on Azurite, run() sleeps: the default prefetchMiniBatches (2)
  serial     the same with prefetchMiniBatches 0: each mini-batch fetched when its turn comes

Each job is timed twice: its wall time (start-up, planning, scoring and the merge) and
its scoring time (from the first worker's start to the merge's end, as `parallelrun run`
prints it), which leaves out planning: listing the input, which differs between the
remote and the local input and which no run() can overlap. Target: overlap within 1.15x
of max(fetch, compute); serial is about their sum.

    python bench/bench_prefetch.py
    python bench/bench_prefetch.py --batches 40 --files 20 --size 65536 --sleep 0.3

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "azure"))

from azurite import Azurite, azurite_blob  # noqa: E402

SCORE = '''
import os, time

def run(mini_batch):
    time.sleep(float(os.environ["BENCH_SLEEP"]))
    return [f"{os.path.basename(p)} {os.path.getsize(p)}" for p in mini_batch]
'''


def job_file(workdir: Path, name: str, input_uri: str, files: int, processes: int, prefetch: int) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: prefetch-{name}}}
spec:
  input: {{uri: "{input_uri}", type: files}}
  code: {{uri: {workdir}/, entryScript: score.py}}
  output: {{uri: {workdir}/out-{name}/}}
  miniBatchSize: {files}
  processCountPerNode: {processes}
  prefetchMiniBatches: {prefetch}
""")
    return path


def timed(job: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, scoring seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(job), "--fresh"], env=env,
                          capture_output=True, text=True, cwd=job.parent)
    if done.returncode:
        sys.exit(f"{job.name} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, float(re.search(r"time: ([\d.]+)s", done.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="mini-batches")
    parser.add_argument("--files", type=int, default=10, help="blobs per mini-batch")
    parser.add_argument("--size", type=int, default=256 * 1024, help="bytes per blob")
    parser.add_argument("--sleep", type=float, default=0.25, help="run()'s seconds per mini-batch")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="parallelrun-bench-prefetch-"))
    (workdir / "score.py").write_text(SCORE)
    server = Azurite.start(azurite_blob(), workdir / "azurite", in_memory=True)
    try:
        from adlfs import AzureBlobFileSystem

        fs = AzureBlobFileSystem(connection_string=server.connection_string)
        fs.mkdir("bench")
        local = workdir / "local"
        local.mkdir()
        data = os.urandom(args.size)
        names = [f"f{i:06d}.bin" for i in range(args.batches * args.files)]
        for start in range(0, len(names), 200):
            fs.pipe({f"bench/in/{n}": data for n in names[start:start + 200]})
        for n in names:
            (local / n).write_bytes(data)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
        remote = "az://bench/in/"
        jobs = {"fetch": (job_file(workdir, "fetch", remote, args.files, args.processes, 2), 0.0),
                "compute": (job_file(workdir, "compute", f"{local}/", args.files, args.processes, 2), args.sleep),
                "overlap": (job_file(workdir, "overlap", remote, args.files, args.processes, 2), args.sleep),
                "serial": (job_file(workdir, "serial", remote, args.files, args.processes, 0), args.sleep)}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
        for i in range(args.repeat):
            order = list(jobs.items()) if i % 2 == 0 else list(jobs.items())[::-1]
            for name, (job, sleep) in order:
                times[name].append(timed(job, dict(env, BENCH_SLEEP=str(sleep))))
                wall, scoring = times[name][-1]
                print(f"round {i + 1}: {name:<8} {wall:6.2f} s wall, {scoring:6.2f} s scoring", flush=True)
    finally:
        server.stop()

    print(f"\n{args.batches} mini-batches x {args.files} blobs of {args.size:,} B on Azurite, run() sleeps "
          f"{args.sleep} s, {args.processes} process(es), median of {args.repeat}:")
    for k, what in ((0, "wall"), (1, "scoring")):
        median = {name: statistics.median(t[k] for t in runs) for name, runs in times.items()}
        bound = max(median["fetch"], median["compute"])
        print(f"  {what}: " + ", ".join(f"{name} {value:.2f} s" for name, value in median.items()))
        print(f"    overlap / max(fetch, compute) = {median['overlap'] / bound:.2f} (target <= 1.15: "
              f"{'PASS' if median['overlap'] / bound <= 1.15 else 'MISS'}); serial / max = {median['serial'] / bound:.2f}, "
              f"serial / (fetch + compute) = {median['serial'] / (median['fetch'] + median['compute']):.2f}")

if __name__ == "__main__":
    main()
