"""What `parallelrun report` (and the merge pod, which publishes the page) costs for a run of
many mini-batches, against reading the same report/minibatches.csv as records
(reportfiles.read_attempts): the page's figures should cost about one read of the lines.

A run folder of `--lines` attempt lines (64 workers, 1% failed) is written once; then
`--pairs` alternating pairs time gather() + render() and read_attempts(), and the median
ratio is printed with both medians. Target: the page ≤ 1.5x the records' read.

    python bench/bench_report.py
    python bench/bench_report.py --lines 1000000 --pairs 3

Run by hand; never part of CI. Say the load (`uptime`) with the figures.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time

from parallelrun.runner.layout import Layout
from parallelrun.runner.records import AttemptLine
from parallelrun.runner.report import gather
from parallelrun.runner.reportfiles import attempts_csv, read_attempts
from parallelrun.runner.reportpage import render
from parallelrun.runner.storage import filesystem

TARGET = 1.5
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def lines(count: int):
    for i in range(count):
        worker = i % 64
        start = (T0 + datetime.timedelta(seconds=(i // 64) * 0.5)).isoformat().replace("+00:00", "Z")
        failed = i % 100 == 0
        yield AttemptLine(i, i - i % 1000, worker // 8, f"pod-{worker // 8}", worker % 8, 1, start,
                          0.4 + (i % 13) / 100, 0.3, 0.01, 10, 0 if failed else 10, 10 if failed else 0,
                          "failed" if failed else "succeeded", f"RuntimeError: kind {i % 7}" if failed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    fs, root = filesystem(tempfile.mkdtemp(prefix="parallelrun-bench-report-"))
    layout = Layout(root, "bench-0123456789")
    os.makedirs(layout.report_dir)
    with open(layout.report_mini_batches, "w") as f:
        f.write(attempts_csv(lines(args.lines), header=True))
    page, records = [], []
    for _ in range(args.pairs):
        began = time.perf_counter()
        render(gather(fs, layout))
        page.append(time.perf_counter() - began)
        began = time.perf_counter()
        read_attempts(fs, layout)
        records.append(time.perf_counter() - began)
    ratio = statistics.median(p / r for p, r in zip(page, records))
    print(f"{args.lines:,} attempt lines: page {statistics.median(page):.2f} s, records {statistics.median(records):.2f}"
          f" s, ratio {ratio:.2f} ({'PASS' if ratio <= TARGET else 'FAIL'}, target ≤ {TARGET}); load "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
