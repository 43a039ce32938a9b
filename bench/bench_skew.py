"""Skew (work distribution, point 2): 800 files, `nodeCount: 4`, one worker each, the first
quarter of the items 4x as costly as the rest, against an even job of the same total work.

An item's cost is a sleep (the machine's load does not change it): the even job sleeps
EVEN seconds per item, the skewed one 4c for each of the first 200 items and c for the
other 600, with 200 * 4c + 600 * c = 800 * EVEN. Static shards make the skewed job as slow
as its first shard (about 1.75x the even one); pods that claim chunks and take over the
tails of the others' ranges bring it to the even job's time. Each round runs both jobs
(`parallelrun run job.yaml --fresh`; the seconds it reports, scoring and merge) in
alternating order; the median of the per-round ratios is printed, with the target.

    python bench/bench_skew.py                  # 3 rounds
    python bench/bench_skew.py --repeat 5 --even 0.01
    python bench/bench_skew.py --before 6e2e10f  # that version's ratio too, in the same rounds

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from earlier import pythonpath

TARGET = 1.2
ITEMS, NODES = 800, 4

SCORE = '''
import os, time

COSTS = [float(c) for c in os.environ["BENCH_COSTS"].split(",")]

def run(mini_batch):
    for path in mini_batch:
        time.sleep(COSTS[int(path.rsplit("_", 1)[1].split(".")[0])])
    return [path.rsplit("/", 1)[-1] for path in mini_batch]
'''

JOB = """apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: skew}}
spec:
  input: {{uri: {data}, type: files}}
  code: {{uri: {code}, entryScript: score.py}}
  output: {{uri: {out}}}
  miniBatchSize: 1
  nodeCount: {nodes}
  processCountPerNode: 1
"""


def costs(even: float, skewed: bool) -> list[float]:
    if not skewed:
        return [even] * ITEMS
    c = even * ITEMS / (ITEMS // 4 * 4 + ITEMS - ITEMS // 4)
    return [4 * c if i < ITEMS // 4 else c for i in range(ITEMS)]


def run_job(folder: Path, item_costs: list[float], path: str | None) -> float:
    """Seconds from the start of scoring to the end of the merge, as the run reports them (its
    start-up and planning, the same in both jobs, are left out: on a loaded machine they are
    most of the noise)."""
    env = {**os.environ, "BENCH_COSTS": ",".join(map(str, item_costs)), **({"PYTHONPATH": path} if path else {})}
    done = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(folder / "job.yaml"), "--fresh"],
                          check=True, env=env, capture_output=True, text=True, cwd=folder)  # not the checkout
    return float(re.search(r"^time: ([0-9.]+)s", done.stdout + done.stderr, re.MULTILINE).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--even", type=float, default=0.02, help="seconds per item of the even job")
    parser.add_argument("--before", nargs="*", default=[], help="earlier commits to measure in the same rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-skew-") as tmp:
        folder = Path(tmp)
        (folder / "data").mkdir()
        for i in range(ITEMS):
            (folder / "data" / f"item_{i:04d}.txt").write_text(f"{i}\n")
        (folder / "score.py").write_text(SCORE)
        (folder / "job.yaml").write_text(JOB.format(data=folder / "data", code=folder, out=folder / "out", nodes=NODES))
        versions = {"this": None, **{commit: pythonpath(commit) for commit in args.before}}
        ratios: dict[str, list[float]] = {v: [] for v in versions}
        for k in range(args.repeat):
            for version, path in versions.items():
                took = {}
                for name in (["even", "skewed"] if k % 2 == 0 else ["skewed", "even"]):
                    took[name] = run_job(folder, costs(args.even, name == "skewed"), path)
                ratios[version].append(took["skewed"] / took["even"])
                print(f"round {k + 1} {version}: even {took['even']:.2f} s, skewed {took['skewed']:.2f} s, "
                      f"ratio {ratios[version][-1]:.3f}", flush=True)
        print(f"{ITEMS} files, nodeCount {NODES}, 1 worker each, first quarter 4x, against the even job "
              f"({args.even * ITEMS / NODES:.2f} s of sleep per node):")
        for version in versions:
            print(f"  {version}: median ratio {statistics.median(ratios[version]):.3f}")
        print(f"target <= {TARGET}")
        ratio = statistics.median(ratios["this"])
        print("PASS" if ratio <= TARGET else "MISS")


if __name__ == "__main__":
    main()
