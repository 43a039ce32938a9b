"""Many mini-batches in flight: `async def run` with `miniBatchesInFlight` against a
scoring endpoint, and the synchronous run() one call at a time.

A local HTTP endpoint (a process of its own) answers `POST /score` after a
latency set per item: `fixed` (`--latency`, 50 ms) or `tail` (log-normal, the same mean,
sigma 1: most calls quick, a few ten times slower), the same for every run. `--items`
one-item mini-batches (1,200), `--processes` workers (2), two jobs per latency shape:

  async   async def run() posts its item with aiohttp (a session made in async init()),
          miniBatchesInFlight `--in-flight` (16)
  sync    def run() posts with http.client, one call at a time per worker

alternately, `--repeat` times. A job's scoring time is the endpoint's: from the first
request it received to its last answer; beside it, the time `parallelrun run` prints
(from the first worker's start to the merge's end: importing aiohttp in each worker and
the merge included) and the wall time. The ideal is the sum of the latencies / (workers
x in flight), no less than the slowest call. Targets: async scoring within 1.5x of the
ideal, for both shapes (issue 19, point 2), and the same output bytes from every job;
the sync scoring's ratio to the async one is printed beside it.

    python bench/bench_in_flight.py
    python bench/bench_in_flight.py --items 600 --repeat 3 --shapes tail

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ASYNC_SCORE = '''
import os
import aiohttp
from pathlib import Path

async def init():
    global session
    session = aiohttp.ClientSession(os.environ["BENCH_ENDPOINT"], connector=aiohttp.TCPConnector(limit=0))

async def run(mini_batch):
    out = []
    for path in mini_batch:
        async with session.post("/score", json={"item": int(Path(path).read_text())}) as response:
            out.append(str((await response.json())["score"]))
    return out
'''

SYNC_SCORE = '''
import http.client, json, os
from pathlib import Path
from urllib.parse import urlsplit

def init():
    global connection
    connection = http.client.HTTPConnection(urlsplit(os.environ["BENCH_ENDPOINT"]).netloc)

def run(mini_batch):
    out = []
    for path in mini_batch:
        connection.request("POST", "/score", json.dumps({"item": int(Path(path).read_text())}),
                           {"Content-Type": "application/json"})
        out.append(str(json.loads(connection.getresponse().read())["score"]))
    return out
'''


def latencies(shape: str, mean: float, items: int) -> list[float]:
    """Each item's latency, the same in every run: fixed, or log-normal with the same mean."""
    if shape == "fixed":
        return [mean] * items
    sigma = 1.0
    mu = math.log(mean) - sigma ** 2 / 2  # a log-normal's mean is exp(mu + sigma^2 / 2)
    rng = random.Random(19)
    return [rng.lognormvariate(mu, sigma) for _ in range(items)]


class _Endpoint:
    """HTTP/1.1 with keep-alive, as little of it as the two clients use (asyncio.Protocol: the
    endpoint's own CPU time stays small beside the runner's on a shared machine)."""

    def __init__(self, delays: list[float]):
        self.delays = delays
        self.first = self.last = None  # the first request's arrival, the last answer's departure
        self.answered = 0

    def __call__(self):
        import asyncio

        delays, endpoint = self.delays, self

        class Connection(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport, self.buffer = transport, b""

            def data_received(self, data):
                self.buffer += data
                while b"\r\n\r\n" in self.buffer:
                    head, rest = self.buffer.split(b"\r\n\r\n", 1)
                    if head.startswith(b"GET /span"):  # the scoring span since the last asked, and reset
                        self.buffer = rest
                        self.reply(json.dumps({"first": endpoint.first, "last": endpoint.last,
                                               "answered": endpoint.answered}).encode())
                        endpoint.first = endpoint.last = None
                        endpoint.answered = 0
                        continue
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                    if len(rest) < length:
                        return
                    body, self.buffer = rest[:length], rest[length:]
                    item = json.loads(body)["item"]
                    if endpoint.first is None:
                        endpoint.first = time.monotonic()
                    asyncio.get_running_loop().call_later(delays[item], self.answer, item)

            def answer(self, item):
                endpoint.last = time.monotonic()
                endpoint.answered += 1
                self.reply(json.dumps({"score": item * 2}).encode())

            def reply(self, body):
                if not self.transport.is_closing():
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

        return Connection()


def serve(port: int, delays_file: str) -> None:
    """The endpoint: answers item k after delays[k] seconds (its requests' answers may
    cross on one connection: each client sends one request at a time on each)."""
    import asyncio

    async def main():
        server = await asyncio.get_running_loop().create_server(
            _Endpoint(json.loads(Path(delays_file).read_text())), "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"the endpoint did not start on port {port}")


def job_file(workdir: Path, name: str, items_dir: Path, processes: int, in_flight: int) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: in-flight-{name}}}
spec:
  input: {{uri: {items_dir}/, type: files}}
  code: {{uri: {workdir}/{name}/, entryScript: score.py}}
  output: {{uri: {workdir}/out-{name}/}}
  miniBatchSize: 1
  processCountPerNode: {processes}
  miniBatchesInFlight: {in_flight}
  runInvocationTimeout: 600
""")
    return path


def span(port: int) -> float:
    """Seconds from the endpoint's first request to its last answer since it was last asked."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/span") as response:
        answer = json.loads(response.read())
    return answer["last"] - answer["first"]


def timed(job: Path, env: dict) -> tuple[float, float, str]:
    """(wall seconds, the seconds `parallelrun run` prints, output bytes' digest)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(job), "--fresh"], env=env,
                          capture_output=True, text=True, cwd=job.parent)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{job.name} failed:\n{done.stderr[-3000:]}")
    output = (job.parent / f"out-{job.stem}" / "parallel_run_step.txt").read_bytes()
    return wall, float(re.search(r"time: ([\d.]+)s", done.stderr).group(1)), hashlib.sha256(output).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1200, help="one-item mini-batches")
    parser.add_argument("--latency", type=float, default=0.05, help="the endpoint's mean latency, seconds")
    parser.add_argument("--processes", type=int, default=2, help="workers")
    parser.add_argument("--in-flight", type=int, default=16, help="miniBatchesInFlight of the async job")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of alternating async and sync jobs")
    parser.add_argument("--shapes", nargs="+", default=["fixed", "tail"], choices=["fixed", "tail"])
    parser.add_argument("--target", type=float, default=1.5, help="async scoring time / ideal, at most")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DELAYS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} CPUs")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-in-flight-") as tmp:
        workdir = Path(tmp)
        items_dir = workdir / "items"
        items_dir.mkdir()
        for k in range(args.items):
            (items_dir / f"item_{k:05d}.txt").write_text(str(k))
        for name, score in (("async", ASYNC_SCORE), ("sync", SYNC_SCORE)):
            (workdir / name).mkdir()
            (workdir / name / "score.py").write_text(score)
        jobs = {"async": job_file(workdir, "async", items_dir, args.processes, args.in_flight),
                "sync": job_file(workdir, "sync", items_dir, args.processes, 1)}
        for shape in args.shapes:
            delays = latencies(shape, args.latency, args.items)
            delays_file = workdir / f"delays-{shape}.json"
            delays_file.write_text(json.dumps(delays))
            ideal = max(sum(delays) / (args.processes * args.in_flight), max(delays))
            port = free_port()
            server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(delays_file)])
            try:
                wait_for_port(port)
                env = {**os.environ, "BENCH_ENDPOINT": f"http://127.0.0.1:{port}"}
                scoring: dict[str, list[float]] = {"async": [], "sync": []}
                total: dict[str, list[float]] = {"async": [], "sync": []}
                digests = set()
                for r in range(args.repeat):
                    for name in ("async", "sync") if r % 2 == 0 else ("sync", "async"):
                        wall, printed, digest = timed(jobs[name], env)
                        scoring[name].append(span(port))
                        total[name].append(printed)
                        digests.add(digest)
                        print(f"{shape:5s} round {r + 1} {name:5s} scoring {scoring[name][-1]:6.2f} s  "
                              f"time {printed:6.2f} s  wall {wall:6.2f} s  output {digest}  "
                              f"(load {os.getloadavg()[0]:.2f})", flush=True)
            finally:
                server.kill()
                server.wait()
            best = {name: min(s) for name, s in scoring.items()}
            ratio = best["async"] / ideal
            sync_ideal = sum(delays) / args.processes
            print(f"{shape}: mean latency {statistics.mean(delays) * 1000:.1f} ms, slowest {max(delays) * 1000:.0f} ms; "
                  f"ideal {ideal:.2f} s; async scoring (best) {best['async']:.2f} s = {ratio:.2f}x the ideal, "
                  f"{min(total['async']):.2f} s with start-up and merge; sync scoring {best['sync']:.2f} s "
                  f"({best['sync'] / sync_ideal:.2f}x its ideal {sync_ideal:.1f} s), {best['sync'] / best['async']:.1f}x "
                  f"the async scoring; outputs {'identical' if len(digests) == 1 else 'DIFFER'}")
            verdicts.append((f"{shape}: async scoring within {args.target}x of the ideal", ratio <= args.target))
            verdicts.append((f"{shape}: async and sync outputs identical", len(digests) == 1))
    for what, ok in verdicts:
        print(f"{'PASS' if ok else 'MISS'} {what}")


if __name__ == "__main__":
    main()
