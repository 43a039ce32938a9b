"""Planning a million local files against a bare `os.scandir` listing of the same folder.

Target: planning 1,000,000 local files (files input, one file a mini-batch,
4 shards) within 1.5x the wall time of a bare listing, adding no more memory than
the 353 MiB planning added before.

  bare      a recursive os.scandir of the folder, each entry's relative path and size
            kept and sorted (bench_operator.bare_listing): the least any planner does.
  planning  parallelrun.runner.planning.ensure_plan(spec, fs, layout), as local mode and
            the operator call it: list, stamp, cut, shard, and write the plan (its
            shard files and header) under a fresh work folder.

Each is timed in a process of its own (imports not timed), alternately `--repeat`
times, wall and CPU seconds (on a shared machine CPU seconds vary less); memory is what the step adds to the process's peak resident set (VmHWM,
reset before the step). With `--before COMMIT`, planning as of that commit (bench/earlier.py)
runs in the same rounds too, and its figures and ratios are printed beside. The files are made once, in a cache folder on /dev/shm when
it has room (tmpfs: the listing measures the planner, not the disk), else under the
system's temp dir; the plan is written beside them.

    python bench/bench_plan.py                     # 1,000,000 files, 5 pairs
    python bench/bench_plan.py --files 100000 --repeat 3
    python bench/bench_plan.py --repeat 3 --before main   # planning as of main too, in the same rounds

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_operator import bare_listing, ensure_local_files, proc_status_kib, reset_peak
from earlier import pythonpath

TARGET_RATIO = 1.5
TARGET_MIB = 353


def cache_folder(files: int) -> Path:
    """/dev/shm when it can hold the files (about 4 KiB of tmpfs each), else the temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > files * 8192:
        return shm / "parallelrun-bench-plan"
    return Path(tempfile.gettempdir()) / "parallelrun-bench-plan"


def measure(step: str, data: str, work: str) -> dict:
    """One step's wall seconds and added peak memory, in this process."""
    from parallelrun.runner.layout import Layout
    from parallelrun.runner.planning import ensure_plan
    from parallelrun.runner.spec import load_spec
    from parallelrun.runner.storage import filesystem

    spec = load_spec({"spec": {"input": {"uri": data, "type": "files"}, "code": {"entryScript": "score.py"},
                               "output": {"uri": work}, "nodeCount": 4}})
    fs, out = filesystem(work)
    layout = Layout(out, "bench", "txt")
    gc.collect()
    before = proc_status_kib("VmRSS")
    reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    if step == "bare":
        count = bare_listing(data)
    else:
        count = ensure_plan(spec, fs, layout).total_mini_batches
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "mib": (proc_status_kib("VmHWM") - before) / 1024, "count": count}


def run_step(step: str, data: Path, work: Path, env: dict | None = None) -> dict:
    """One step in a process of its own; `env` with PYTHONPATH: an earlier commit's planning."""
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", step, str(data) + "/", str(work) + "/"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-folder", type=int, default=10_000, help="files per sub-folder (10,000)")
    parser.add_argument("--repeat", type=int, default=5, help="pairs of runs, alternating (default 5)")
    parser.add_argument("--workdir", type=Path, help="where the files are made once (default: see above)")
    parser.add_argument("--before", metavar="COMMIT", help="also plan with parallelrun as of this commit")
    parser.add_argument("--measure", nargs=3, metavar=("STEP", "DATA", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    workdir = args.workdir or cache_folder(args.files)
    workdir.mkdir(parents=True, exist_ok=True)
    data = ensure_local_files(workdir, args.files, args.per_folder)
    work = workdir / "plan-out"
    results: dict[str, list[dict]] = {"bare": [], "planning": [], **({"before": []} if args.before else {})}
    before_env = dict(os.environ, PYTHONPATH=pythonpath(args.before)) if args.before else None
    for i in range(args.repeat):
        for step in results:
            r = run_step("planning" if step == "before" else step, data, work, before_env if step == "before" else None)
            results[step].append(r)
            print(f"run {i + 1}: {step:<8} {r['seconds']:6.2f} s, {r['cpu']:6.2f} CPU-s, +{r['mib']:4.0f} MiB "
                  f"({r['count']:,})", flush=True)
        print(f"run {i + 1}: ratio    {results['planning'][-1]['seconds'] / results['bare'][-1]['seconds']:6.2f} "
              f"(CPU {results['planning'][-1]['cpu'] / results['bare'][-1]['cpu']:.2f})")
    ratios = [p["seconds"] / b["seconds"] for p, b in zip(results["planning"], results["bare"])]
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(p["cpu"] / b["cpu"] for p, b in zip(results["planning"], results["bare"]))
    mib = statistics.median(r["mib"] for r in results["planning"])
    print(f"\n{args.files:,} files in {data}: bare listing median {statistics.median(r['seconds'] for r in results['bare']):.2f} s, "
          f"planning median {statistics.median(r['seconds'] for r in results['planning']):.2f} s, +{mib:.0f} MiB; "
          f"median pair ratio {ratio:.2f} (target <= {TARGET_RATIO}; CPU seconds: {cpu_ratio:.2f}); pair ratios "
          f"{', '.join(f'{r:.2f}' for r in sorted(ratios))}")
    if args.before:
        before = results["before"]
        print(f"planning as of {args.before}: median {statistics.median(r['seconds'] for r in before):.2f} s, "
              f"+{statistics.median(r['mib'] for r in before):.0f} MiB; this version against it, median pair ratio "
              f"{statistics.median(p['seconds'] / b['seconds'] for p, b in zip(results['planning'], before)):.2f} "
              f"wall, {statistics.median(p['cpu'] / b['cpu'] for p, b in zip(results['planning'], before)):.2f} CPU")
    print(f"time: {'PASS' if ratio <= TARGET_RATIO else 'MISS'}; memory: {'PASS' if mib <= TARGET_MIB else 'MISS'} "
          f"(target <= {TARGET_MIB} MiB)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
