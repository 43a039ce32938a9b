"""Object storage: requests and time of a run on Azurite, against a plain adlfs loop.

`--blobs` input blobs of 600 B (default 5,000) are uploaded into a new in-memory Azurite
(tests/azure/azurite.py) started with its debug log, which has a line per request. Then,
alternately, `--repeat` times:

  parallelrun  `parallelrun run job.yaml --fresh`: files input and output both on Azurite,
               miniBatchSize 1 (one mini-batch a blob), processCountPerNode 2, a run() that
               reads its file and returns one line;
  plain loop   2 processes (the same concurrency), each reading its half of the blobs one
               by one with adlfs' cat_file, computing the same line, and writing its lines
               as one blob at the end.

Each is timed (wall, start-up included) and its requests counted from Azurite's log,
by kind: input reads, listings, and writes and reads of the run's own files (parts,
commits, plan, progress, shard results, summary, final output). The target is at most
2 requests per committed mini-batch for commits (parts + commit records).

With `--before COMMIT` (e.g. a338ea8, before group commits), that version of parallelrun
runs too, in the same rounds (bench/earlier.py).

    python bench/bench_commits_azure.py                 # 5,000 blobs, 2 rounds
    python bench/bench_commits_azure.py --blobs 1000 --repeat 3 --before a338ea8

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "azure"))

from azurite import Azurite, azurite_blob  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_overhead import SCORE  # noqa: E402  (the same run(): each file read, one line each)
from earlier import pythonpath  # noqa: E402

PLAIN = '''
import os, sys
from adlfs import AzureBlobFileSystem
container, part, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fs = AzureBlobFileSystem(connection_string=os.environ["AZURE_STORAGE_CONNECTION_STRING"])
names = sorted(fs.ls(f"{container}/in", detail=False))[part::parts]
lines = [f"{name.rsplit('/', 1)[-1]} {len(fs.cat_file(name))}\\n" for name in names]
fs.pipe_file(f"{container}/plain/part-{part}.txt", "".join(lines).encode())
'''

REQUEST = re.compile(r"RequestMethod=(\w+) RequestURL=(\S+)")
RUN_FILE = re.compile(r"/_parallelrun/[^/]+/(\w+)")


def kind(method: str, url: str) -> str:
    """What a request was for, from its method and URL."""
    path, _, query = url.partition("?")
    if "comp=list" in query or "restype=container" in query:
        return f"{method} listing/container"
    if "/in/" in path:
        return f"{method} input"
    if match := RUN_FILE.search(path):
        folder = match.group(1)
        known = ("parts", "commits", "done", "plan", "progress", "shards", "logs")
        return f"{method} {folder if folder in known else 'run files'}"
    return f"{method} output"


def requests_between(log: Path, start: int) -> tuple[collections.Counter, int]:
    """Requests logged after byte `start`; and the log's new end."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
        end = f.tell()
    return collections.Counter(kind(*m.groups()) for m in REQUEST.finditer(text)), end


def upload(connection_string: str, container: str, blobs: int) -> None:
    from adlfs import AzureBlobFileSystem

    fs = AzureBlobFileSystem(connection_string=connection_string)
    fs.mkdir(container)
    data = b"x" * 599 + b"\n"
    for start in range(0, blobs, 500):
        fs.pipe({f"{container}/in/f{i:07d}.txt": data for i in range(start, min(blobs, start + 500))})


def job_file(workdir: Path, container: str, k: int) -> Path:
    path = workdir / f"job-{k}.yaml"
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: azure-commits}}
spec:
  input: {{uri: "az://{container}/in/", type: files}}
  code: {{uri: {workdir}/, entryScript: score.py}}
  output: {{uri: "az://{container}/out-{k}/"}}
  miniBatchSize: 1
  processCountPerNode: 2
""")
    return path


def run_parallelrun(job: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(job), "--fresh"], env=env,
                          capture_output=True, text=True, cwd=job.parent)  # not the repository: PYTHONPATH counts
    if done.returncode:
        sys.exit(f"parallelrun failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def run_plain(container: str, env: dict) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", PLAIN, container, str(k), "2"], env=env) for k in range(2)]
    if any(p.wait() for p in procs):
        sys.exit("the plain loop failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--before", metavar="COMMIT", help="also run parallelrun as of this commit")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="parallelrun-bench-azure-"))
    (workdir / "score.py").write_text(SCORE)
    log = workdir / "azurite-debug.log"
    server = Azurite.start(azurite_blob(), workdir / "azurite", in_memory=True, debug_log=log)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
        env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
        container = "bench"
        upload(server.connection_string, container, args.blobs)
        time.sleep(1.0)
        _, position = requests_between(log, 0)
        times: dict[str, list[float]] = {"parallelrun": [], "plain loop": []}
        before_env = dict(env, PYTHONPATH=pythonpath(args.before)) if args.before else None
        if before_env:
            times["before"] = []
        requests: dict[str, collections.Counter] = {}
        for i in range(args.repeat):
            order = [("parallelrun", lambda: run_parallelrun(job_file(workdir, container, 2 * i), env)),
                     ("plain loop", lambda: run_plain(container, env))]
            if before_env:
                order.append(("before", lambda: run_parallelrun(job_file(workdir, container, 2 * i + 1), before_env)))
            for name, run in (order if i % 2 == 0 else order[::-1]):
                times[name].append(run())
                time.sleep(1.0)  # Azurite writes its log behind
                counted, position = requests_between(log, position)
                requests.setdefault(name, counted)
                print(f"round {i + 1}: {name:<12} {times[name][-1]:6.2f} s, {sum(counted.values()):,} requests",
                      flush=True)
    finally:
        server.stop()

    n = args.blobs
    print(f"\n{n:,} blobs of 600 B on Azurite, 2 processes, median of {args.repeat}:")
    for name in times:
        print(f"  {name:<12} {statistics.median(times[name]):6.2f} s   {sum(requests[name].values()):7,} requests "
              f"({sum(requests[name].values()) / n:.2f} a blob)")
    for name in times:
        if name != "plain loop":
            ratio = statistics.median(times[name]) / statistics.median(times["plain loop"])
            print(f"  time ratio {name} / plain loop: {ratio:.2f}")
    print("requests by kind (first round):")
    for name, counted in requests.items():
        for what, count in sorted(counted.items()):
            print(f"  {name:<12} {what:<24} {count:7,}")
    for name in requests:
        if name != "plain loop":
            commits = sum(c for what, c in requests[name].items() if what.split()[1] in ("parts", "commits", "done"))
            print(f"{name}: commit requests (parts, commit records; written, read, deleted): {commits:,}, "
                  f"{commits / n:.3f} per committed mini-batch; target <= 2: {'PASS' if commits / n <= 2 else 'MISS'}")


if __name__ == "__main__":
    main()
