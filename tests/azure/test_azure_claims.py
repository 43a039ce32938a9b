"""Claims on Azure Blob (Azurite through adlfs): creates with If-None-Match, listings that must
not come from a cache, a slow shard's range finished by the others."""

from __future__ import annotations

import io
import json

from rich.console import Console

from parallelrun.runner.local import run_local

# Shard 0 runs nothing until another shard has run an item of its range (f000-f019), so the
# run finishes only if the others take over its tail.
SLOW_FIRST_SHARD = """
import os, time

RELEASE = os.path.join(os.environ["RELEASE_DIR"], "released")

def run(mini_batch):
    index = os.environ["PARALLELRUN_SHARD_INDEX"]
    names = [os.path.basename(p) for p in mini_batch]
    if index == "0":
        deadline = time.monotonic() + 100
        while not os.path.exists(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.05)
    elif any(int(name[1:4]) < 20 for name in names):
        open(RELEASE, "w").close()
    return [f"{name} {index}" for name in names]
"""


def test_shards_on_azure_claim_every_chunk_once_and_finish_a_slow_shards_range(az_job, azfs, tmp_path, monkeypatch):
    monkeypatch.setenv("RELEASE_DIR", str(tmp_path))
    for i in range(60):
        az_job.upload(f"in/f{i:03d}.txt", f"{i}\n")
    az_job.script(SLOW_FIRST_SHARD)
    path = az_job.write(miniBatchSize=1, nodeCount=3, processCountPerNode=1, runInvocationTimeout=120)
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["status"] == "Succeeded"
    lines = az_job.read("out/parallel_run_step.txt").decode().splitlines()
    assert [line.split()[0] for line in lines] == [f"f{i:03d}.txt" for i in range(60)]  # once each, in plan order
    assert any(line.split()[1] != "0" for line in lines[:20])  # shard 0's range, partly run by the others
    claims_dir = az_job.blob(f"out/_parallelrun/{summary['runId']}/claims")
    claims = [json.loads(azfs.cat_file(p)) for p in azfs.ls(claims_dir, detail=False) if p.rsplit("/", 1)[1].isdigit()]
    assert sorted(c["chunk"] for c in claims) == sorted({c["chunk"] for c in claims}) and len(claims) > 3
