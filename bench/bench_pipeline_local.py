"""Local pipeline overhead: three trivial container steps, one after another, against the bare commands.

Each round runs, in alternating order, (a) `parallelrun run pipeline.yaml --fresh` (a → b → c,
each `sleep SECONDS`) and (b) the same three commands one after another as plain
subprocesses. The overhead is (a) - (b): starting the CLI, loading and resolving the
pipeline, the reuse index, logs and the table, and with --component a step runner
process per step.

    python bench/bench_pipeline_local.py [--repeat 5] [--seconds 0.2] [--component]

Target: under 2 s of overhead beyond the steps themselves.
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


def pipeline(folder: Path, seconds: float, component: bool) -> Path:
    """a → b → c, each `sleep SECONDS`: container steps, or steps of a command component (no code)."""
    (folder / "sleep.yaml").write_text(yaml.safe_dump({"kind": "Component", "name": "sleep", "version": "1",
                                                      "command": ["sleep", str(seconds)]}))
    steps = []
    for i, name in enumerate("abc"):
        step = {"name": name, **({"component": {"uri": "sleep.yaml"}} if component else
                                 {"container": {"image": "busybox", "command": ["sleep", str(seconds)]}})}
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
    parser.add_argument("--component", action="store_true", help="component steps (each runs the step runner)")
    args = parser.parse_args()
    kind = "component" if args.component else "container"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = pipeline(folder, args.seconds, args.component)
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
    print(f"3 sequential {kind} steps of {args.seconds} s: overhead median {median:.2f} s, "
          f"min {min(overheads):.2f} s, max {max(overheads):.2f} s (target < {TARGET_SECONDS} s): "
          f"{'PASS' if median < TARGET_SECONDS else 'MISS'}")
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
