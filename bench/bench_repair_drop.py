"""A repair's first step on a run of N mini-batches (default 1,000,000, 1% of them failed): the commit
records of the failed ones dropped from the pods' commit files (repair._drop_failed), this version
against an earlier one (`--before COMMIT`), alternating processes on copies of the same run folder
(in /dev/shm where there is one). Prints the load average.

    python bench/bench_repair_drop.py --before HEAD~1
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from earlier import pythonpath

RUN_ID = "job-0123456789"
LINES_PER_FILE = 1000

TIMED = """
import sys, time
from parallelrun.runner.layout import Layout
from parallelrun.runner.repair import _drop_failed
from parallelrun.runner.storage import filesystem
fs, _ = filesystem(sys.argv[1])
started = time.perf_counter()
_drop_failed(fs, Layout(sys.argv[1], sys.argv[2]), range(int(sys.argv[3])))
print(time.perf_counter() - started)
"""


def _line(mb: int) -> str:
    failed = mb % 100 == 7
    errors = (f'{{"miniBatch":{mb},"item":"/in/f{mb}.txt","source":{{"files":["/in/f{mb}.txt"]}},"items":1,'
              '"attempts":3,"error":"ValueError: bug","traceback":null}') if failed else ""
    report = f"{mb},{mb - mb % 64},0,host,0,1,2026-01-01T00:00:00.000Z,0.1,0.05,,1,{0 if failed else 1},{int(failed)}"
    return (f'{{"id":{mb},"status":"succeeded","items":1,"attempts":{3 if failed else 1},"errors":[{errors}],'
            f'"schema":null,"succeeded":{0 if failed else 1},"failed":{int(failed)},'
            f'"part":["g-0-0-0123456789ab.txt",{mb * 10},10],"report":"{report},succeeded,\\n"}}')


def _make(folder: str, count: int) -> None:
    commits = os.path.join(folder, "_parallelrun", RUN_ID, "commits", "00000")
    os.makedirs(commits)
    for first in range(0, count, LINES_PER_FILE):
        with open(os.path.join(commits, f"{first:09d}.jsonl"), "w") as f:
            f.write("".join(_line(mb) + "\n" for mb in range(first, min(first + LINES_PER_FILE, count))))


def _time(template: str, path: str | None, count: int, scratch: str) -> float:
    run = os.path.join(scratch, "run")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(template, run)
    env = dict(os.environ, PYTHONPATH=path) if path else None
    done = subprocess.run([sys.executable, "-c", TIMED, run, RUN_ID, str(count)], capture_output=True, text=True,
                          env=env, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini-batches", type=int, default=1_000_000)
    parser.add_argument("--before", default="HEAD~1")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    earlier = pythonpath(args.before)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as scratch:
        template = os.path.join(scratch, "template")
        _make(template, args.mini_batches)
        print(f"load average {os.getloadavg()[0]:.2f}; {args.mini_batches:,} mini-batches, 1% failed")
        ratios = []
        for pair in range(args.pairs):
            order = ("before", "this") if pair % 2 == 0 else ("this", "before")
            seconds = {which: _time(template, earlier if which == "before" else None, args.mini_batches, scratch)
                       for which in order}
            ratios.append(seconds["this"] / seconds["before"])
            print(f"pair {pair + 1}: {args.before} {seconds['before']:.2f} s, this {seconds['this']:.2f} s, "
                  f"ratio {ratios[-1]:.3f}")
        print(f"median ratio {statistics.median(ratios):.3f}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
