"""GPU: one worker process per GPU, pinned, and I/O overlapped with a real model.

Needs CUDA GPUs, PyTorch with torchvision and Pillow, and Azurite (tests/azure/azurite.py finds
`azurite-blob` on PATH or installs it with npm). Two checks:

pinning  A job with `environment.gpu.count: G` (G = the GPUs this machine shows) and no
         processCountPerNode runs one worker per GPU. Each worker reports, from inside
         run(), CUDA_VISIBLE_DEVICES, how many devices PyTorch sees, the UUID of the one it
         computes on, and a tensor computed there. PASS when each of the G workers sees exactly
         one GPU and the G workers cover the G GPUs once each. Then 2G workers
         (processCountPerNode): each still sees one GPU, and each GPU serves two of them.
overlap  `--images` JPEGs on Azurite, scored by a torchvision model (random weights: nothing is
         downloaded) in bfloat16 on the GPU, run() decoding and resizing each image, one worker
         per GPU, `--batch` images per mini-batch. As bench_prefetch.py, four jobs alternate:
           fetch    input on Azurite, run() returns at once: fetching alone
           compute  input on the local disk: decoding and the model alone
           overlap  input on Azurite with the default prefetchMiniBatches (2)
           serial   the same with prefetchMiniBatches 0: each mini-batch fetched when its turn comes
         and, with `--before COMMIT` (or the folder bench/earlier.py lays out for one), `overlap`
         with that earlier parallelrun, in the same rounds.
         Each job is timed as the span from the first run() call's start to the last one's end
         (read from the outputs: the stamps are CLOCK_MONOTONIC, shared by the processes), which
         leaves out start-up, the model's load and planning, and as the scoring time
         `parallelrun run` prints. Target: overlap within 1.15x of max(fetch, compute).

    python bench/bench_gpu.py
    python bench/bench_gpu.py --images 4096 --batch 128 --model resnet152 --repeat 3
    python bench/bench_gpu.py --before 2bb2abb

Run by hand on a machine with a GPU; never part of CI.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "azure"))

from azurite import Azurite, azurite_blob
from bench_prefetch import timed

PIN_SCORE = '''
import json, os, time
import torch

def run(mini_batch):
    time.sleep(0.25)  # long enough for every worker to get items, whichever started first
    device = torch.cuda.current_device()
    value = (torch.arange(4, device="cuda") * 2).sum().item()  # computed on the GPU this worker sees
    line = json.dumps({"worker": os.environ["PARALLELRUN_WORKER_INDEX"], "pid": os.getpid(),
                       "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "count": torch.cuda.device_count(),
                       "uuid": str(torch.cuda.get_device_properties(device).uuid), "value": value})
    return [line for _ in mini_batch]
'''

MODEL_SCORE = '''
import json, os, time
import numpy as np
import torch
import torchvision
from PIL import Image

model = None


def init():
    global model
    torch.backends.cudnn.benchmark = True
    model = getattr(torchvision.models, os.environ["BENCH_MODEL"])(weights=None)
    model = model.eval().to("cuda", torch.bfloat16, memory_format=torch.channels_last)
    with torch.inference_mode():  # cuDNN picks its kernels now, not in the first mini-batch
        model(torch.zeros(int(os.environ["BENCH_BATCH"]), 3, 224, 224, device="cuda", dtype=torch.bfloat16))
    torch.cuda.synchronize()


def run(mini_batch):
    start = time.monotonic()
    if os.environ.get("BENCH_FETCH_ONLY"):
        labels = [-1] * len(mini_batch)
    else:
        pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224))) for p in mini_batch])
        x = torch.from_numpy(pixels).to("cuda", non_blocking=True).permute(0, 3, 1, 2)
        x = x.to(torch.bfloat16).div_(255).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            labels = model(x).argmax(1).tolist()
    end = time.monotonic()
    return [json.dumps([os.path.basename(p), label, start, end]) for p, label in zip(mini_batch, labels)]
'''


def job_file(workdir: Path, name: str, input_uri: str, batch: int, gpus: int, processes: int | None = None,
             prefetch: int = 2) -> Path:
    path = workdir / f"{name}.yaml"
    count = f"\n  processCountPerNode: {processes}" if processes else ""
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: gpu-{name}}}
spec:
  input: {{uri: "{input_uri}", type: files}}
  code: {{uri: {workdir}/, entryScript: {'pin.py' if name.startswith('pin') else 'score.py'}}}
  output: {{uri: {workdir}/out-{name}/}}
  environment: {{gpu: {{count: {gpus}}}}}
  miniBatchSize: {batch}{count}
  prefetchMiniBatches: {prefetch}
""")
    return path


def output_lines(workdir: Path, name: str) -> list[str]:
    return (workdir / f"out-{name}" / "parallel_run_step.txt").read_text().splitlines()


def check_pinning(workdir: Path, env: dict, gpus: int) -> bool:
    """One worker per GPU, each on its own; then two per GPU. True when both hold."""
    files = workdir / "pin-in"
    files.mkdir()
    for i in range(24 * gpus):
        (files / f"item-{i:04d}.txt").write_text(str(i))
    ok = True
    for name, processes, per_gpu in (("pin-one", None, 1), ("pin-two", 2 * gpus, 2)):
        timed(job_file(workdir, name, f"{files}/", 1, gpus, processes), env)
        seen = {}
        for line in output_lines(workdir, name):
            report = json.loads(line)
            seen.setdefault(report["worker"], set()).add((report["visible"], report["count"], report["uuid"],
                                                          report["value"]))
        workers = {w: s.pop() for w, s in seen.items() if len(s) == 1}
        uuids = [uuid for _, _, uuid, _ in workers.values()]
        good = (len(workers) == len(seen) == per_gpu * gpus
                and all(count == 1 and value == 12 for _, count, _, value in workers.values())
                and len(set(uuids)) == gpus and all(uuids.count(u) == per_gpu for u in set(uuids)))
        ok &= good
        print(f"{name}: {len(seen)} workers for {gpus} GPU(s): "
              + "; ".join(f"worker {w}: CUDA_VISIBLE_DEVICES={v} sees {c} device(s), {u[:13]}"
                          for w, (v, c, u, _) in sorted(workers.items()))
              + f" -> {'PASS' if good else 'FAIL'}", flush=True)
    return ok


def make_images(count: int, width: int, height: int) -> dict[str, bytes]:
    """JPEGs of smooth random colour fields, about the size of a photo of that size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = {}
    for i in range(count):
        coarse = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)
        picture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)) + noise
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
        images[f"img-{i:06d}.jpg"] = buffer.getvalue()
    return images


def span(lines: list[str], expected: int, name: str) -> float:
    """Seconds from the first batch's compute start to the last one's end (each line's stamps)."""
    stamps = [json.loads(line) for line in lines]
    if len(stamps) != expected:
        sys.exit(f"{name}: {len(stamps)} output lines for {expected} images")
    return max(s[3] for s in stamps) - min(s[2] for s in stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64, help="images per mini-batch")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--model", default="resnet50", help="a torchvision.models function")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pinning-only", action="store_true", help="the pinning check alone")
    parser.add_argument("--no-serial", action="store_true", help="leave out the serial job (prefetch 0)")
    parser.add_argument("--before", help="an earlier commit, or the folder earlier.pythonpath() made for it")
    args = parser.parse_args()
    before = None
    if args.before:
        from earlier import pythonpath

        before = args.before if os.path.isdir(args.before) else pythonpath(args.before)

    import torch

    gpus = torch.cuda.device_count()
    if not gpus:
        sys.exit("no CUDA GPU visible: this benchmark needs one")
    print(f"{gpus} GPU(s): {', '.join(torch.cuda.get_device_name(i) for i in range(gpus))}; torch {torch.__version__}")
    workdir = Path(tempfile.mkdtemp(prefix="parallelrun-bench-gpu-"))
    (workdir / "pin.py").write_text(PIN_SCORE)
    (workdir / "score.py").write_text(MODEL_SCORE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
    pinned = check_pinning(workdir, env, gpus)
    if args.pinning_only:
        print(f"pinning: {'PASS' if pinned else 'FAIL'}")
        sys.exit(0 if pinned else 1)

    server = Azurite.start(azurite_blob(), workdir / "azurite", in_memory=True)
    try:
        from adlfs import AzureBlobFileSystem

        images = make_images(args.images, args.width, args.height)
        fs = AzureBlobFileSystem(connection_string=server.connection_string)
        fs.mkdir("bench")
        local = workdir / "local"
        local.mkdir()
        names = sorted(images)
        for start in range(0, len(names), 200):
            fs.pipe({f"bench/in/{n}": images[n] for n in names[start:start + 200]})
        for n in names:
            (local / n).write_bytes(images[n])
        size = sum(map(len, images.values())) / len(images)
        env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
        env.update(BENCH_MODEL=args.model, BENCH_BATCH=str(args.batch))
        remote = "az://bench/in/"
        jobs = {"fetch": (job_file(workdir, "fetch", remote, args.batch, gpus), {"BENCH_FETCH_ONLY": "1"}),
                "compute": (job_file(workdir, "compute", f"{local}/", args.batch, gpus), {}),
                "overlap": (job_file(workdir, "overlap", remote, args.batch, gpus), {}),
                "serial": (job_file(workdir, "serial", remote, args.batch, gpus, prefetch=0), {})}
        if args.no_serial:
            del jobs["serial"]
        if before:
            path = os.pathsep.join(p for p in (before, env.get("PYTHONPATH")) if p)
            jobs["overlap-before"] = (job_file(workdir, "overlap-before", remote, args.batch, gpus), {"PYTHONPATH": path})
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
        for i in range(args.repeat):
            order = list(jobs.items()) if i % 2 == 0 else list(jobs.items())[::-1]
            for name, (job, extra) in order:
                _, scoring = timed(job, dict(env, **extra))
                times[name].append((span(output_lines(workdir, name), args.images, name), scoring))
                print(f"round {i + 1}: {name:<14} {times[name][-1][0]:6.2f} s run() span, {scoring:6.2f} s scoring",
                      flush=True)
    finally:
        server.stop()

    print(f"\n{args.images} JPEGs of {args.width}x{args.height} (mean {size / 1024:.0f} KiB) on Azurite, {args.model} "
          f"bf16, {args.batch} a mini-batch, one worker per GPU ({gpus}), median of {args.repeat}:")
    verdicts = []
    for k, what in ((0, "run() span"), (1, "scoring")):
        median = {name: statistics.median(t[k] for t in runs) for name, runs in times.items()}
        bound = max(median["fetch"], median["compute"])
        verdicts.append(median["overlap"] / bound <= 1.15)
        print(f"  {what}: " + ", ".join(f"{name} {value:.2f} s" for name, value in median.items()))
        print(f"    overlap / max(fetch, compute) = {median['overlap'] / bound:.2f} (target <= 1.15: "
              f"{'PASS' if verdicts[-1] else 'MISS'})"
              + (f"; serial / max = {median['serial'] / bound:.2f}, serial / (fetch + compute) = "
                 f"{median['serial'] / (median['fetch'] + median['compute']):.2f}" if "serial" in median else "")
              + (f"; overlap-before / max = {median['overlap-before'] / bound:.2f}" if "overlap-before" in median else ""))
    print(f"pinning: {'PASS' if pinned else 'FAIL'}")


if __name__ == "__main__":
    main()
