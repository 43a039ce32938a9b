"""The cost of claims on object storage (work distribution, point 3), counted on Azurite.

`--blobs` input blobs (default 2,000) on a new in-memory Azurite started with its debug
log (a line per request); one `parallelrun run job.yaml --fresh` with input and output
on Azurite, miniBatchSize 1, `nodeCount` 4 local shards of one process each, claiming
chunks as pods do. Its requests are counted by kind from the log: claim creates
(If-None-Match: *, won or refused), claim reads, listings of the claims folder, takeover
markers, and heartbeats (a PUT per pod every HEARTBEAT_SECONDS, whatever the number of
chunks), against the chunks claimed (the claim blobs left) and all requests of the run.

Target: at most 2 requests per claimed chunk (heartbeats apart), and claims a small
share of all requests.

    python bench/bench_claims_azure.py
    python bench/bench_claims_azure.py --blobs 5000 --nodes 8

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "azure"))
sys.path.insert(0, str(ROOT / "bench"))

from azurite import Azurite, azurite_blob  # noqa: E402
from bench_commits_azure import REQUEST, kind, upload  # noqa: E402
from bench_overhead import SCORE  # noqa: E402

CLAIM = re.compile(r"/claims/(\d+)(\.takeover-)?|/claims/alive-")


def claim_kind(method: str, url: str) -> str:
    """A request on the claims folder by what it was for; else bench_commits_azure's kind."""
    path, _, query = unquote(url).partition("?")
    if "comp=list" in query and "/claims" in query:
        return "LIST claims"
    if match := CLAIM.search(path):
        what = "heartbeat" if match.group(1) is None else "takeover marker" if match.group(2) else "claim"
        return f"{method} {what}"
    return kind(method, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="parallelrun-bench-claims-"))
    (workdir / "score.py").write_text(SCORE)
    job = workdir / "job.yaml"
    job.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: azure-claims}}
spec:
  input: {{uri: "az://bench/in/", type: files}}
  code: {{uri: {workdir}/, entryScript: score.py}}
  output: {{uri: "az://bench/out/"}}
  miniBatchSize: 1
  nodeCount: {args.nodes}
  processCountPerNode: 1
""")
    log = workdir / "azurite-debug.log"
    server = Azurite.start(azurite_blob(), workdir / "azurite", in_memory=True, debug_log=log)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
        upload(server.connection_string, "bench", args.blobs)
        time.sleep(1.0)
        start = log.stat().st_size
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(job), "--fresh"], env=env,
                              capture_output=True, text=True, cwd=workdir)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"parallelrun failed:\n{done.stderr[-3000:]}")
        time.sleep(1.0)  # Azurite writes its log behind
        with open(log, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        from adlfs import AzureBlobFileSystem

        fs = AzureBlobFileSystem(connection_string=server.connection_string)
        claimed = len([p for p in fs.find("bench/out/_parallelrun") if re.search(r"/claims/\d+$", p)])
    finally:
        server.stop()
    counted = collections.Counter(claim_kind(*m.groups()) for m in REQUEST.finditer(text))
    total = sum(counted.values())
    print(f"{args.blobs:,} blobs, miniBatchSize 1, nodeCount {args.nodes}: {seconds:.2f} s, {total:,} requests, "
          f"{claimed} chunks claimed")
    for what, count in sorted(counted.items()):
        print(f"  {what:<28} {count:7,}")
    claiming = sum(c for what, c in counted.items() if what.split(" ", 1)[1] in ("claim", "claims", "takeover marker"))
    beats = sum(c for what, c in counted.items() if what.endswith("heartbeat"))
    per_chunk = claiming / max(claimed, 1)
    print(f"claim requests (creates won or refused, reads, listings, takeovers): {claiming:,}, "
          f"{per_chunk:.2f} per claimed chunk (target <= 2: {'PASS' if per_chunk <= 2 else 'MISS'}); "
          f"heartbeats {beats:,}; claims and heartbeats {100 * (claiming + beats) / total:.1f}% of all requests")


if __name__ == "__main__":
    main()
