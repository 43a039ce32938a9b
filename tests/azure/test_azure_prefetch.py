"""Prefetching (spec.prefetchMiniBatches): a worker fetches its next mini-batches while run() computes."""

from __future__ import annotations

import io
import json
import tempfile

import pytest
from rich.console import Console

from parallelrun.runner.local import run_local
from parallelrun.runner.storage import filesystem

# For each mini-batch, whether the next one's files were already fetched while this run()
# computed (after a pause long enough for a small blob), and the greatest number of
# mini-batches on the scratch disk at once.
PROBING = """
import json, os, time
from pathlib import Path

def run(mini_batch):
    folder = Path(mini_batch[0]).parent  # <scratch>/files/<mini-batch id>
    time.sleep(0.6)
    fetched = sorted(int(p.name) for p in folder.parent.iterdir())
    with open(os.environ["PROBE_LOG"], "a") as f:
        f.write(json.dumps({"id": int(folder.name), "on_disk": fetched}) + "\\n")
    return [Path(p).read_text() for p in mini_batch]
"""


@pytest.mark.parametrize("prefetch", [0, 2])
def test_the_next_mini_batches_are_fetched_while_run_computes(az_job, tmp_path, monkeypatch, prefetch):
    probe = tmp_path / "probe.jsonl"
    monkeypatch.setenv("PROBE_LOG", str(probe))
    for i in range(6):
        az_job.upload(f"in/f{i}.txt", f"{i}\n")
    az_job.script(PROBING)
    path = az_job.write(miniBatchSize=1, processCountPerNode=1, prefetchMiniBatches=prefetch)
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 6, "failed": 0}
    assert az_job.read("out/parallel_run_step.txt").decode().split() == [str(i) for i in range(6)]
    calls = [json.loads(line) for line in probe.read_text().splitlines()]
    for call in calls:
        ahead = [k for k in call["on_disk"] if k > call["id"]]
        if prefetch:  # bounded: the next ones are there, never more than `prefetch` of them
            assert 1 <= len(ahead) <= prefetch or call["id"] == 5, call
        else:
            assert ahead == [], call
    assert all(len(call["on_disk"]) <= 1 + prefetch for call in calls)


def test_a_negative_prefetch_is_refused_and_the_default_keeps_run_ids():
    from parallelrun.runner.spec import SpecError, load_spec

    base = {"input": {"uri": "data/", "type": "files"}, "code": {"entryScript": "score.py"}, "output": {"uri": "o/"}}
    assert load_spec({"spec": base}).prefetch_mini_batches == 2
    assert load_spec({"spec": base}).fingerprint() == load_spec({"spec": {**base, "prefetchMiniBatches": 2}}).fingerprint()
    assert load_spec({"spec": {**base, "prefetchMiniBatches": 0}}).to_dict()["prefetchMiniBatches"] == 0
    with pytest.raises(SpecError, match="spec.prefetchMiniBatches"):
        load_spec({"spec": {**base, "prefetchMiniBatches": -1}})


def test_worker_scratch_is_left_clean(az_job, tmp_path, monkeypatch):
    """Fetched files are removed once their mini-batch ran (prefetched ones included)."""
    for i in range(4):
        az_job.upload(f"in/f{i}.txt", f"{i}\n")
    az_job.script("def run(paths):\n    return [open(p).read() for p in paths]\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where local mode makes its scratch folders
    run_local(str(az_job.write(miniBatchSize=1, processCountPerNode=1)), console=Console(file=io.StringIO()))
    assert list(scratch.rglob("worker-0/files")), "the worker fetched into its scratch folder"
    assert not list(scratch.rglob("worker-0/files/*/*"))


# The first mini-batch's run() deletes the blob of the fourth, which the prefetching thread reads
# only once the first one is done (1 + prefetch mini-batches at a time): a fetch that failed
# is reported in plan order, as the failure of that mini-batch alone.
DELETING = """
import os
from pathlib import Path
from adlfs import AzureBlobFileSystem

def run(mini_batch):
    if Path(mini_batch[0]).name == "f0.txt":
        fs = AzureBlobFileSystem(connection_string=os.environ["AZURE_STORAGE_CONNECTION_STRING"])
        fs.rm_file(os.environ["DOOMED_BLOB"])
    return [Path(p).read_text().strip() for p in mini_batch]
"""


def test_a_blob_gone_before_its_fetch_fails_its_items_with_the_error(az_job, connection_string, monkeypatch):
    monkeypatch.setenv("DOOMED_BLOB", az_job.blob("in/f3.txt"))
    for i in range(6):
        az_job.upload(f"in/f{i}.txt", f"{i}\n")
    az_job.script(DELETING)
    path = az_job.write(miniBatchSize=1, processCountPerNode=1, prefetchMiniBatches=2,
                        errorThreshold=-1, runMaxTry=1)
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 5, "failed": 1}
    assert az_job.read("out/parallel_run_step.txt").decode().split() == ["0", "1", "2", "4", "5"]
    fs, errors = filesystem(summary["errors"])
    [error] = [json.loads(line) for line in fs.cat_file(errors).decode().splitlines()]
    assert error["item"].endswith("f3.txt") and "f3.txt" in error["error"], error
    assert "in local_files" in error["traceback"], "the traceback is the fetch's, raised where run() would be"



@pytest.mark.parametrize("prefetch", [0, 2])
def test_preprocess_gets_the_fetched_files_of_the_next_mini_batches(az_job, tmp_path, monkeypatch, prefetch):
    """preprocess(path) in preprocessProcesses reads the files the worker fetched (at least one
    mini-batch ahead, whatever prefetchMiniBatches), before their folder is cleaned up."""
    for i in range(12):
        az_job.upload(f"in/f{i:02d}.txt", f"{i}\n")
    az_job.script("import os\n\ndef preprocess(path):\n    return open(path).read().strip() + ' ' + str(os.getpid())\n\n"
                  "def run(mini_batch):\n    return [f'{v.split()[0]} {v.split()[1] != str(os.getpid())}' for v in mini_batch]\n")
    path = az_job.write(miniBatchSize=3, processCountPerNode=1, prefetchMiniBatches=prefetch, preprocessProcesses=2)
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 12, "failed": 0}
    assert az_job.read("out/parallel_run_step.txt").decode().splitlines() == [f"{i} True" for i in range(12)]
