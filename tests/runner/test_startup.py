"""A files job starts cheaply: neither the local-mode process nor its workers load the
tabular stack (numpy, pandas, pyarrow) or fsspec (local paths are served by LocalFS, as
fsspec would), and planning without numpy shards as before."""

import json
import subprocess
import sys

import pytest

from parallelrun.runner.commits import record_line
from parallelrun.runner.planning import FileBatches, Listing, MiniBatch, shard
from parallelrun.runner.records import DoneRecord, ErrorLine

HEAVY = ("numpy", "pandas", "pyarrow", "fsspec")

# A local run in a process of its own; prints the heavy modules it loaded.
RUN = """
import io, json, sys
from rich.console import Console
from parallelrun.runner.local import run_local
summary = run_local(sys.argv[1], console=Console(file=io.StringIO()))
print(json.dumps({"items": summary["items"], "loaded": [m for m in %r if m in sys.modules]}))
"""


def test_a_files_job_loads_no_tabular_module(job):
    job.files(6)
    job.script("""
        import sys
        from pathlib import Path

        def run(mini_batch):
            return [f"{Path(p).name} {[m for m in ('numpy', 'pandas', 'pyarrow', 'fsspec') if m in sys.modules]}"
                    for p in mini_batch]
    """)
    done = subprocess.run([sys.executable, "-c", RUN % (HEAVY,), str(job.write(miniBatchSize=2))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"items": {"succeeded": 6, "failed": 0}, "loaded": []}  # the local-mode process
    assert all(line.endswith(" []") for line in job.final().read_text().splitlines())  # each worker


def test_off_a_terminal_no_status_line_is_set_up(job):
    """rich shows a status (Planning..., Merging...) only on a terminal: elsewhere neither its
    modules nor its refresh thread are paid for, and the output is the same."""
    job.files(2)
    job.script("def run(mini_batch):\n    return list(mini_batch)\n")
    done = subprocess.run([sys.executable, "-c", RUN % (("rich.status", "rich.live"),), str(job.write())],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["loaded"] == []


@pytest.mark.parametrize("count", [1, 3, 7])
@pytest.mark.parametrize("shards", [1, 2, 3, 5, 40])
def test_files_shard_as_their_mini_batches_would(count, shards):
    sizes = [(i * 7919) % 1000 for i in range(37)]  # uneven, some empty files
    listing = Listing([f"f{i:02d}" for i in range(37)], sizes, [None] * 37)
    batches = FileBatches(listing, count)
    assert shard(batches, shards) == shard(list(batches), shards)
    assert sum(s.items for s in shard(batches, shards)) == 37


def test_plan_lines_parse_at_once_as_one_by_one():
    batches = [MiniBatch(id=0, size=10, items=2, files=("a", "b/c"), stamps=(4, 17, 6, "etag")),
               MiniBatch(id=1, size=99, items=None, file="x.csv", bytes=(0, 99), stamps=(99, None)),
               MiniBatch(id=2, size=5, items=5, file="y.parquet", rows=(10, 15)),
               MiniBatch(id=3, size=1, items=1, files=("k",), key={"species": "setosa"})]
    lines = [mb.to_json() for mb in batches]
    assert MiniBatch.many_from_json(lines) == [MiniBatch.from_json(line) for line in lines] == batches


@pytest.mark.parametrize("record", [
    DoneRecord(7, "succeeded", 3, 3, 0, 1, part=("g-0-1-0123456789ab.txt", 120, 45)),
    DoneRecord(8, "succeeded", 2, 1, 1, 2, part=("g-0-1-0123456789ab.parquet", 0, 9)),
    DoneRecord(9, "succeeded", 4, 0, 4, 1),  # no part: run() returned nothing
    DoneRecord(10, "failed", 1, 0, 1, 3, errors=[ErrorLine(10, "/in/a.txt", {"files": ["/in/a.txt"]}, 1, 3,
                                                           'ValueError: "quoted" \\ and ünïcode', "Traceback...")]),
    DoneRecord(11, "succeeded", 1, 1, 0, 1, schema="x: int64", part=("g-0-0-aa.csv", 5, 6)),
    DoneRecord(12, "succeeded", 1, 1, 0, 1, part=('odd "name".txt', 0, 1)),
    DoneRecord(13, "succeeded", 1, 1, 0, 2, part=("g-0-0-aa.txt", 0, 1),
               report='13,12,0,h,0,1,2026-01-01T00:00:00.000Z,0.1,,,1,0,0,retried,"KeyError: \'a, ""b""\'"\n'),
])
def test_a_commit_line_is_the_record_as_json(record):
    line = record_line(record)
    assert json.loads(line) == json.loads(json.dumps(record.to_dict()))
    assert DoneRecord.from_dict(json.loads(line)) == record


def test_a_pods_entry_point_loads_no_tabular_module():
    """`python -m parallelrun.runner score` of a files job: the report's numpy and pyarrow are the merge's."""
    code = "import sys, parallelrun.runner.__main__; print([m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
