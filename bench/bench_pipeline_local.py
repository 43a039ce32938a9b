"""Local pipeline overhead: three trivial container steps, one after another, against the bare commands.

Each round runs, in alternating order, (a) `parallelrun run pipeline.yaml --fresh` (a → b → c,
each `sleep SECONDS`) and (b) the same three commands one after another as plain
subprocesses. The overhead is (a) - (b): starting the CLI, loading and resolving the
pipeline, a step runner process per step, the reuse index, logs and the table.

    python bench/bench_pipeline_local.py [--repeat 5] [--seconds 0.2]

Target (issue 7): under 2 s of overhead beyond the steps themselves.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TARGET_SECONDS = 2.0


def pipeline(folder: Path, seconds: float) -> Path:
    steps = []
    for i, name in enumerate("abc"):
        step = {"name": name, "container": {"image": "busybox", "command": ["sleep", str(seconds)]}}
        steps.append({**step, "dependsOn": ["abc"[i - 1]]} if i else step)
    doc = {"apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "bench"},
           "spec": {"workdir": "work/", "steps": steps}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return time.perf_counter() - started


def bare(seconds: float, cwd: Path) -> float:
    started = time.perf_counter()
    for _ in range(3):
        subprocess.run(["sleep", str(seconds)], cwd=cwd, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.2, help="each step's sleep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = pipeline(folder, args.seconds)
        command = [sys.executable, "-m", "parallelrun.cli", "run", str(path), "--fresh"]
        timed(command, folder)  # warm the file cache once
        overheads = []
        for round_ in range(args.repeat):
            if round_ % 2:
                base, run = bare(args.seconds, folder), timed(command, folder)
            else:
                run, base = timed(command, folder), bare(args.seconds, folder)
            overheads.append(run - base)
            print(f"round {round_ + 1}: pipeline {run:.2f} s, bare commands {base:.2f} s, "
                  f"overhead {run - base:.2f} s, ratio {run / base:.2f}")
    median = statistics.median(overheads)
    print(f"3 sequential container steps of {args.seconds} s: overhead median {median:.2f} s, "
          f"min {min(overheads):.2f} s, max {max(overheads):.2f} s (target < {TARGET_SECONDS} s): "
          f"{'PASS' if median < TARGET_SECONDS else 'MISS'}")
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
