"""Small mini-batches: 20,000 files of 600 B, a run() that reads each file
and returns one line, 2 processes, against a plain Python loop doing the same.

Each round runs the plain loop (`python -c`, one process: start-up included) and
`parallelrun run job.yaml --fresh` once per miniBatchSize (default 100, 10 and 1), in
alternating order, `--repeat` rounds; the medians and each median's ratio to the plain
loop's median are printed, with the targets (under 2 s at miniBatchSize 1, under 0.6 s
at 100, start-up included) and the CPU seconds each used (user + system, children
included: a figure that shared machines disturb less than wall time).

parallelrun's modules are byte-compiled first (as an installed package is; here
PYTHONDONTWRITEBYTECODE may be set, and every process would compile them again).

Last, it lists the heavy modules a worker loads before its first mini-batch (a files
job must not pay for pandas, pyarrow, numpy, fsspec, rich or adlfs).

With `--before COMMIT...` (e.g. a338ea8, before group commits), each of those versions of
parallelrun runs each job too, in the same rounds (bench/earlier.py), and the medians of
each one's ratios to this version's are printed.

    python bench/bench_overhead.py                       # 20,000 files, miniBatchSize 100, 10, 1
    python bench/bench_overhead.py --batches 1 --repeat 5 --before a338ea8
    python bench/bench_overhead.py --batches 100 1 --repeat 7 --before main HEAD~3

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from earlier import pythonpath

TARGETS = {1: 2.0, 100: 0.6}  # seconds, on the 2-core machine

SCORE = '''
def run(mini_batch):
    out = []
    for path in mini_batch:
        with open(path, "rb") as f:
            out.append(f"{path.rsplit('/', 1)[-1]} {len(f.read())}")
    return out
'''

PLAIN = '''
import os, sys
folder, target = sys.argv[1], sys.argv[2]
out = []
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as f:
        out.append(f"{name} {len(f.read())}\\n")
with open(target, "w") as f:
    f.write("".join(out))
'''

HEAVY = ("pandas", "pyarrow", "numpy", "fsspec", "rich", "adlfs", "azure", "kopf", "kubernetes")


def prepare(workdir: Path, files: int) -> Path:
    data = workdir / f"data-{files}"
    if not data.exists() or len(os.listdir(data)) != files:
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        for i in range(files):
            (data / f"f{i:07d}.txt").write_bytes(b"x" * 599 + b"\n")
    (workdir / "score.py").write_text(SCORE)
    return data


def job_file(workdir: Path, data: Path, batch: int, processes: int) -> Path:
    path = workdir / f"job-{batch}.yaml"
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: small-{batch}}}
spec:
  input: {{uri: {data}/, type: files}}
  code: {{uri: {workdir}/, entryScript: score.py}}
  output: {{uri: {workdir}/out-{batch}/}}
  miniBatchSize: {batch}
  processCountPerNode: {processes}
""")
    return path


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parallelrun_command() -> list[str]:
    return [sys.executable, "-m", "parallelrun.cli"]


def worker_imports() -> list[str]:
    """Heavy modules a worker process has loaded before its first mini-batch: what the
    zygote that forks it imports for a files job (runner/zygote.py)."""
    code = ("import sys, parallelrun.runner.zygote, parallelrun.runner.worker; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 10, 1], help="miniBatchSize values")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="default: a folder under the system's temp dir, kept")
    parser.add_argument("--before", metavar="COMMIT", nargs="+", default=[],
                        help="also run parallelrun as of each of these commits")
    args = parser.parse_args()

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "runner"), str(root / "parallelrun")],
                   check=True)
    workdir = (args.workdir or Path(tempfile.gettempdir()) / "parallelrun-bench-small").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data = prepare(workdir, args.files)
    jobs = {b: job_file(workdir, data, b, args.processes) for b in args.batches}
    plain = [sys.executable, "-c", PLAIN, str(data), str(workdir / "plain.txt")]
    print("baseline:", " ".join(plain[:2]), "<plain loop>", *plain[3:])
    print("parallelrun:", " ".join([*parallelrun_command(), "run", str(jobs[args.batches[0]]), "--fresh"]))

    names = [f"mbs {b}" for b in args.batches] + [f"{c} {b}" for c in args.before for b in args.batches]
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], **{name: [] for name in names}}
    envs = {c: dict(os.environ, PYTHONPATH=pythonpath(c)) for c in args.before}
    for i in range(args.repeat):
        order = [("plain", plain)] + [(name, [*parallelrun_command(), "run", str(jobs[int(name.split()[1])]), "--fresh"])
                                      for name in names]
        if i % 2:
            order.reverse()
        for name, cmd in order:
            commit = name.split()[0]  # an earlier version runs outside the repository: PYTHONPATH counts
            runs[name].append(timed(cmd, envs.get(commit), workdir if commit in envs else None))
            print(f"round {i + 1}: {name:<8} {runs[name][-1][0]:6.2f} s wall {runs[name][-1][1]:6.2f} CPU-s",
                  flush=True)
    out = (workdir / "out-1" / "parallel_run_step.txt") if 1 in args.batches else None
    if out is not None and sorted(out.read_text().splitlines()) != sorted((workdir / "plain.txt").read_text().splitlines()):
        sys.exit("the outputs differ")

    base = statistics.median(w for w, _ in runs["plain"])
    base_cpu = statistics.median(c for _, c in runs["plain"])
    print(f"\n{args.files:,} files, {args.processes} processes, median of {args.repeat}:")
    print(f"  {'plain loop':<28}{base:6.2f} s wall  {base_cpu:5.2f} CPU-s")
    for name in names:
        b = int(name.split()[1])
        wall = statistics.median(w for w, _ in runs[name])
        cpu = statistics.median(c for _, c in runs[name])
        target = TARGETS.get(b) if name.startswith("mbs") else None
        verdict = "" if target is None else f"  target < {target} s: {'PASS' if wall < target else 'MISS'}"
        if not name.startswith("mbs"):  # this version against that one, round by round
            pairs = [(w / v, c / u) for (w, c), (v, u) in zip(runs[f"mbs {b}"], runs[name])]
            verdict = (f"  this version / it: {statistics.median(w for w, _ in pairs):.2f}x wall, "
                       f"{statistics.median(c for _, c in pairs):.2f}x CPU")
        label = f"miniBatchSize {b}" + (f" ({name.split()[0]})" if not name.startswith("mbs") else "")
        print(f"  {label:<28}{wall:6.2f} s wall  {cpu:5.2f} CPU-s  ratio {wall / base:5.2f}x wall, "
              f"{cpu / base_cpu:5.2f}x CPU{verdict}")
    print(f"heavy modules a worker loads before run(): {worker_imports() or 'none'} (of {', '.join(HEAVY)})")


if __name__ == "__main__":
    main()
