"""errors.jsonl lines as typed records (records.ErrorLine) against plain dicts, on the path a failed
item takes: made by the shard, committed in its DoneRecord's line (commits.record_line), read back
by the merge (one parse per commit file, DoneRecord.from_dict) and written to errors.jsonl.

The baseline does the same JSON work on dicts, as the shard and merge did before the records were
typed; alternating pairs, the median pair ratio. Prints the load average.

    python bench/bench_error_lines.py --lines 1000000
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

from parallelrun.runner.commits import _JSON, record_line
from parallelrun.runner.records import DoneRecord, ErrorLine

FILES_PER_MINI_BATCH = 10
COMMIT_FILE_LINES = 100  # records per commit file: the merge parses a file at once


def _source(mb: int) -> dict:
    return {"files": [f"/data/in/img_{mb:07d}_{k}.png" for k in range(FILES_PER_MINI_BATCH)]}


def _through(lines: int, typed: bool) -> float:
    """Seconds to make, commit, read back and write `lines` error lines of failed files."""
    started = time.perf_counter()
    commit_lines = []
    for mb in range(lines // FILES_PER_MINI_BATCH):
        source = _source(mb)
        if typed:
            errors = [ErrorLine(mb, f, source, 1, 3, "ValueError: cannot decode", "Traceback ...\n")
                      for f in source["files"]]
            commit_lines.append(record_line(DoneRecord(mb, "failed", 10, 0, 10, 3, errors=errors)))
        else:
            errors = [{"miniBatch": mb, "item": f, "source": source, "items": 1, "attempts": 3,
                       "error": "ValueError: cannot decode", "traceback": "Traceback ...\n"} for f in source["files"]]
            commit_lines.append(_JSON.encode({"id": mb, "status": "failed", "items": 10, "attempts": 3,
                                              "errors": errors, "schema": None, "succeeded": 0, "failed": 10,
                                              "part": None, "report": None}))
    out = io.StringIO()
    for first in range(0, len(commit_lines), COMMIT_FILE_LINES):
        parsed = json.loads(f"[{','.join(commit_lines[first:first + COMMIT_FILE_LINES])}]")
        for d in parsed:
            if typed:
                for record in DoneRecord.from_dict(d).errors:
                    out.write(json.dumps(record.to_dict()) + "\n")
            else:
                for record in d["errors"]:
                    out.write(json.dumps(record) + "\n")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; {args.lines:,} error lines")
    ratios = []
    for pair in range(args.pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        seconds = {typed: _through(args.lines, typed) for typed in order}
        ratios.append(seconds[True] / seconds[False])
        print(f"pair {pair + 1}: dicts {seconds[False]:.2f} s, ErrorLine {seconds[True]:.2f} s, "
              f"ratio {ratios[-1]:.3f}")
    print(f"median ratio {statistics.median(ratios):.3f}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
