"""A files job starts cheaply: neither the local-mode process nor its workers load the
tabular stack (numpy, pandas, pyarrow), and planning without numpy shards as before."""

import json
import subprocess
import sys

import pytest

from parallelrun.runner.plan import FileBatches, Listing, shard

HEAVY = ("numpy", "pandas", "pyarrow")

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
            return [f"{Path(p).name} {[m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules]}"
                    for p in mini_batch]
    """)
    done = subprocess.run([sys.executable, "-c", RUN % (HEAVY,), str(job.write(miniBatchSize=2))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"items": {"succeeded": 6, "failed": 0}, "loaded": []}  # the local-mode process
    assert all(line.endswith(" []") for line in job.final().read_text().splitlines())  # each worker


@pytest.mark.parametrize("count", [1, 3, 7])
@pytest.mark.parametrize("shards", [1, 2, 3, 5, 40])
def test_files_shard_as_their_mini_batches_would(count, shards):
    sizes = [(i * 7919) % 1000 for i in range(37)]  # uneven, some empty files
    listing = Listing([f"f{i:02d}" for i in range(37)], sizes, [None] * 37)
    batches = FileBatches(listing, count)
    assert shard(batches, shards) == shard(list(batches), shards)
    assert sum(s.items for s in shard(batches, shards)) == 37
