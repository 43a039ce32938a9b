"""Planning Azure Blob input: the planner's paged listing against adlfs' find, on Azurite.

adlfs' find(detail=True) holds every blob's full properties until the listing ends;
the planner (runner/planning/listing.py, _azure_blobs) lists page by page and keeps a name and a
size. This measures both on the same container, each in a fresh process: time, and
peak memory above the process's resident set just before (Linux VmHWM, reset through
/proc/self/clear_refs). `find` is adlfs' call alone; `plan_run` is the operator's whole
planning (list, cut, shard over 4 nodes, write the plan to a local folder).

`--blobs` small blobs are uploaded into a new in-memory Azurite (tests/azure/azurite.py,
from npm) for each size; Azurite slows down as it fills (40,000 take about 4 minutes).
Figures per blob are the slope between the smallest and the largest size, so that
what does not grow with the listing (clients, the first pages) drops out.

    python bench/bench_azure_listing.py                    # 10,000 and 40,000 blobs

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "azure"))

from azurite import Azurite, azurite_blob  # noqa: E402

MIB = 1024


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure(case: str, connection_string: str, container: str, out: str) -> dict:
    """One measurement, in this (fresh) process."""
    from adlfs import AzureBlobFileSystem

    from parallelrun.operator.jobs.planning import plan_run
    from parallelrun.runner.spec import load_spec

    fs = AzureBlobFileSystem(connection_string=connection_string)
    fs.ls(container)  # the client is made and connected before the measurement
    spec = load_spec({"spec": {"input": {"uri": f"az://{container}/", "type": "files"},
                               "code": {"entryScript": "score.py"}, "output": {"uri": out}, "nodeCount": 4}})
    before = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = time.perf_counter()
    if case == "find":
        count = len(fs.find(container, detail=True))
    else:
        count = plan_run(spec, "bench-0", {"AZURE_STORAGE_CONNECTION_STRING": connection_string}).total_items
    return {"seconds": time.perf_counter() - start, "count": count,
            "peak_mib": (status_kib("VmHWM") - before) / MIB}


def fill(azurite: Azurite, container: str, blobs: int) -> None:
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(azurite.connection_string, container)
    client.create_container()
    print(f"uploading {blobs:,} blobs into {container} ...", flush=True)
    with ThreadPoolExecutor(16) as pool:
        for _ in pool.map(lambda i: client.upload_blob(f"d{i // 1000:04d}/part-{i:07d}.bin", b"%015d\n" % i),
                          range(blobs)):
            pass


def run_case(case: str, azurite: Azurite, container: str, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # else plan_run reads the plan back instead of listing
    cmd = [sys.executable, __file__, "--measure", case, azurite.connection_string, container, str(out)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "parallelrun-bench-azure",
                        help="Azurite's log and the plans written")
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    results = {}
    for blobs in args.blobs:
        azurite = Azurite.start(azurite_blob(), args.workdir / "azurite", in_memory=True)  # empty: fast to fill
        try:
            fill(azurite, "bench", blobs)
            for case in ("find", "plan_run"):
                r = results[blobs, case] = run_case(case, azurite, "bench", args.workdir / "plan-out")
                print(f"{blobs:>9,} blobs  {case:<8} {r['seconds']:6.1f} s  peak +{r['peak_mib']:5.0f} MiB",
                      flush=True)
        finally:
            azurite.stop()
    if len(args.blobs) >= 2:
        small, big = min(args.blobs), max(args.blobs)
        for case in ("find", "plan_run"):
            slope = (results[big, case]["peak_mib"] - results[small, case]["peak_mib"]) / (big - small) * MIB
            print(f"{case:<8} {slope:.2f} KiB a blob: {slope * 1e6 / MIB / MIB:.2f} GiB for 1,000,000 blobs")


if __name__ == "__main__":
    main()
