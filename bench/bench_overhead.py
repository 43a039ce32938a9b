"""Per-mini-batch overhead of the runner: the digits example with a run() that does nothing.

Issue 2, point 9: the overhead per mini-batch must stay under 2 ms.

Method. The digits PNGs (examples/digits/prepare.py) are hard-linked over and over into
one folder until there are `--files` of them (default 10,000), and a no-op scoring
script is written next to them: init() does nothing, run() returns each file's name
(one string per file, so every item succeeds and every mini-batch commits a part, as
with the real script). Two jobs are then run with `parallelrun run
examples/digits/job.yaml`, overriding input, code, model and output, miniBatchSize
(`--batch`, default 5) and processCountPerNode (`--processes`, default 2):

  tiny  `--batch` × `--processes` files: one mini-batch per worker, i.e. the fixed
        cost (interpreter and worker start-up, planning, pool shutdown, merge);
  big   all the files: N = files / batch mini-batches.

Both are timed as subprocesses (wall clock, launch to exit), alternately, `--repeat`
times; the best of each is kept. Since run() costs nothing, everything the big job
spends beyond the tiny one is per-mini-batch cost of the runner:

  overhead per mini-batch (wall)  = (T_big - T_tiny) / (N_big - N_tiny)

This is what a mini-batch adds to a job's wall time with `--processes` workers (the
issue's figure). Multiplied by the processes it gives the process time a mini-batch
costs (read the mini-batch from the pipe, list the paths, call run(), write its part
and its `done/` marker, report back, account in the shard): the figure to use when
all cores are busy. Both are printed; with `--processes 1` they are the same. The
listing of the extra files during planning is included (it is per file, not per
mini-batch, and small); the planning and scoring+merge times parallelrun prints are
shown separately.

    python bench/bench_overhead.py                        # 10,000 files, miniBatchSize 5
    python bench/bench_overhead.py --batch 1 --files 5000  # stress: one file per mini-batch
    python bench/bench_overhead.py --processes 1

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
TARGET_MS = 2.0

NOOP = '''"""No-op scoring script of bench_overhead.py: one string per file, nothing else."""
import os


def init():
    pass


def run(mini_batch):
    return [os.path.basename(path) for path in mini_batch]
'''


def prepare(workdir: Path, files: int, tiny: int) -> tuple[Path, Path, Path, Path]:
    source, model, code = workdir / "source", workdir / "model", workdir / "code"
    if not (model / "model.joblib").exists() or not any(source.glob("digit_*.png")):
        subprocess.run([sys.executable, str(EXAMPLE / "prepare.py"), "--data-dir", str(source),
                        "--model-dir", str(model)], check=True, stdout=subprocess.DEVNULL)
    code.mkdir(exist_ok=True)
    (code / "noop.py").write_text(NOOP)
    pngs = sorted(source.glob("digit_*.png"))
    big, small = workdir / f"data-{files}", workdir / f"data-{tiny}"
    for folder, count in ((big, files), (small, tiny)):
        if folder.exists() and len(list(folder.iterdir())) == count:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i in range(count):
            os.link(pngs[i % len(pngs)], folder / f"f{i:07d}_{pngs[i % len(pngs)].name}")
    return big, small, code, model


def parallelrun_command() -> list[str]:
    exe = Path(sys.executable).with_name("parallelrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "parallelrun.cli"]


def run_job(data: Path, code: Path, model: Path, out: Path, batch: int, processes: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*parallelrun_command(), "run", str(EXAMPLE / "job.yaml"), "--fresh",
           "--set", f"input.uri={data}/", "--set", f"code.uri={code}/", "--set", "code.entryScript=noop.py",
           "--set", f"model.uri={model}/", "--set", f"output.uri={out}/", "--set", f"miniBatchSize={batch}",
           "--set", f"processCountPerNode={processes}", "--set", "errorThreshold=-1"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    planned = re.search(r"Planned ([\d,]+) mini-batches .* in ([\d.]+)s", done.stderr)
    scored = re.search(r"time: ([\d.]+)s", done.stderr)
    return {"wall": seconds, "mini_batches": int(planned.group(1).replace(",", "")),
            "planning": float(planned.group(2)), "scoring": float(scored.group(1)), "cmd": cmd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5, help="miniBatchSize (default 5, as the example)")
    parser.add_argument("--processes", type=int, default=2, help="processCountPerNode (default 2)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="default: a folder under the system's temp dir, kept")
    args = parser.parse_args()

    workdir = (args.workdir or Path(tempfile.gettempdir()) / "parallelrun-bench-digits").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tiny_files = args.batch * args.processes
    big, small, code, model = prepare(workdir, args.files, tiny_files)
    out = workdir / "out"

    runs: dict[str, list[dict]] = {"tiny": [], "big": []}
    for i in range(args.repeat):
        for name, data in (("tiny", small), ("big", big)):
            r = run_job(data, code, model, out, args.batch, args.processes)
            runs[name].append(r)
            if i == 0 and name == "big":
                print("command:", " ".join(r["cmd"]))
            print(f"run {i + 1}: {name:<4} {r['mini_batches']:6,} mini-batches  {r['wall']:6.2f} s wall "
                  f"(planning {r['planning']:.1f} s, scoring + merge {r['scoring']:.2f} s)", flush=True)

    tiny = min(runs["tiny"], key=lambda r: r["wall"])
    best = min(runs["big"], key=lambda r: r["wall"])
    n = best["mini_batches"] - tiny["mini_batches"]
    wall_ms = 1000 * (best["wall"] - tiny["wall"]) / n
    scoring_ms = 1000 * (best["scoring"] - tiny["scoring"]) / n
    print(f"\n{args.files:,} files, miniBatchSize {args.batch}, {args.processes} process(es), best of {args.repeat}:")
    print(f"  tiny job ({tiny['mini_batches']} mini-batches): {tiny['wall']:.2f} s   "
          f"big job ({best['mini_batches']:,}): {best['wall']:.2f} s")
    print(f"  overhead per mini-batch: {wall_ms:.2f} ms of wall time (scoring + merge only: {scoring_ms:.2f} ms), "
          f"{wall_ms * args.processes:.2f} ms of process time (x {args.processes} processes); "
          f"target < {TARGET_MS} ms")
    print("PASS" if wall_ms < TARGET_MS else "MISS")


if __name__ == "__main__":
    main()
