"""preprocess(item) in preprocess processes against the same work inside the worker.

`--images` JPEGs (bench_gpu.make_images) on the local disk; a scoring script whose
preprocess(path) decodes one and resizes it to 224x224 (PIL: CPU work) and whose run()
sleeps `--sleep` seconds per mini-batch (a stand-in for a GPU; default: the time one
mini-batch takes to decode here, measured first, so that neither side is negligible) and
returns a line per image from its pixels. One worker (`processCountPerNode: 1`, as a pod
with one GPU runs). Two jobs, each `parallelrun run --fresh`, in alternating pairs,
`--repeat` times:

  inside   preprocessProcesses 0: the worker calls preprocess() before each run()
  pool     preprocessProcesses `--processes`: the items of the next mini-batches are
           decoded in those processes while run() sleeps

Both outputs must be the same bytes. Each job is timed twice: its work span, from the
first preprocess() call's start to the last run() call's end (CLOCK_MONOTONIC stamps
the processes append to a file), which leaves out start-up, planning and the merge; and
its scoring time (as `parallelrun run` prints it). Printed: each pair's ratio pool /
inside and their median, against the ideal max(decode / processes, sleep) / (decode +
sleep), and the load average before and after (the ideal assumes `--processes` idle
CPUs). Target: the span ratio at most 1.15x the ideal.

    python bench/bench_preprocess.py
    python bench/bench_preprocess.py --images 800 --batch 32 --processes 2 --repeat 5

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import make_images
from bench_prefetch import timed

SCORE = '''
import os, time
import numpy as np
from PIL import Image


def stamp(kind):
    with open(os.environ["BENCH_STAMPS"], "a") as f:
        f.write(f"{kind} {time.monotonic()}\\n")


def preprocess(path):
    stamp("start")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR))
    return os.path.basename(path), pixels


def run(mini_batch):
    time.sleep(float(os.environ["BENCH_SLEEP"]))
    stamp("end")
    return [f"{name} {int(pixels.sum())}" for name, pixels in mini_batch]
'''


def job_file(workdir: Path, name: str, data: Path, batch: int, processes: int) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: preprocess-{name}}}
spec:
  input: {{uri: "{data}/", type: files}}
  code: {{uri: {workdir}/, entryScript: score.py}}
  output: {{uri: {workdir}/out-{name}/}}
  miniBatchSize: {batch}
  processCountPerNode: 1
  preprocessProcesses: {processes}
""")
    return path


def span(stamps: Path) -> float:
    """Seconds from the first preprocess() start to the last run() end."""
    marks = [line.split() for line in stamps.read_text().splitlines()]
    return max(float(t) for kind, t in marks if kind == "end") - min(float(t) for kind, t in marks if kind == "start")


def decode_seconds(data: Path, batch: int) -> float:
    """Seconds one mini-batch of the images takes to decode here (the median of 5)."""
    namespace: dict = {}
    exec(SCORE, namespace)
    os.environ["BENCH_STAMPS"] = os.devnull
    paths = sorted(data.iterdir())[:batch]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for p in paths:
            namespace["preprocess"](str(p))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--batch", type=int, default=16, help="images per mini-batch")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--processes", type=int, default=2, help="preprocessProcesses of the pool job")
    parser.add_argument("--sleep", type=float, help="run()'s seconds per mini-batch; default: one's decode time")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="parallelrun-bench-preprocess-"))
    (workdir / "score.py").write_text(SCORE)
    data = workdir / "images"
    data.mkdir()
    for name, jpeg in make_images(args.images, args.width, args.height).items():
        (data / name).write_bytes(jpeg)
    decode = decode_seconds(data, args.batch)
    sleep = decode if args.sleep is None else args.sleep
    env = dict(os.environ, BENCH_SLEEP=str(sleep))
    jobs = {"inside": job_file(workdir, "inside", data, args.batch, 0),
            "pool": job_file(workdir, "pool", data, args.batch, args.processes)}
    load_before = os.getloadavg()
    ratios: list[tuple[float, float]] = []
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    for i in range(args.repeat):
        order = list(jobs) if i % 2 == 0 else list(jobs)[::-1]
        for name in order:
            stamps = workdir / f"stamps-{name}-{i}"
            _, scoring = timed(jobs[name], dict(env, BENCH_STAMPS=str(stamps)))
            times[name].append((span(stamps), scoring))
            print(f"round {i + 1}: {name:<6} {times[name][-1][0]:6.2f} s span, {scoring:6.2f} s scoring", flush=True)
        ratios.append((times["pool"][-1][0] / times["inside"][-1][0], times["pool"][-1][1] / times["inside"][-1][1]))
        outputs = {(workdir / f"out-{name}" / "parallel_run_step.txt").read_bytes() for name in jobs}
        if len(outputs) != 1:
            sys.exit("the two jobs' outputs differ")
    load_after = os.getloadavg()

    ideal = max(decode / args.processes, sleep) / (decode + sleep)
    print(f"\n{args.images} JPEGs of {args.width}x{args.height}, {args.batch} a mini-batch: decode {decode:.3f} s, "
          f"run() {sleep:.3f} s per mini-batch; one worker, {args.processes} preprocess processes; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {os.cpu_count()} CPUs")
    for k, what in ((0, "span"), (1, "scoring")):
        ratio = statistics.median(r[k] for r in ratios)
        print(f"  {what}: " + ", ".join(f"{n} {statistics.median(t[k] for t in runs):.2f} s" for n, runs in times.items())
              + f"; pool / inside per pair {', '.join(f'{r[k]:.2f}' for r in ratios)}, median {ratio:.2f}"
              + (f", ideal {ideal:.2f} (target <= {1.15 * ideal:.2f}: {'PASS' if ratio <= 1.15 * ideal else 'MISS'})"
                 if k == 0 else ""))


if __name__ == "__main__":
    main()
