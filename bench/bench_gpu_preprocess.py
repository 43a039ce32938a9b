"""GPU: JPEGs decoded in preprocess() processes against a plain PyTorch DataLoader loop.

Needs a CUDA GPU, PyTorch with torchvision, and Pillow. `--images` JPEGs (bench_gpu.make_images)
on the local disk are decoded and resized to 224x224 (PIL) and scored by a torchvision model
(random weights, seeded: nothing is downloaded) in bfloat16 on one GPU, `--batch` images a
batch. For each CPU budget C of `--cpus`, two jobs alternate, `--repeat` times:

  loader       a plain loop over torch.utils.data.DataLoader(num_workers=C, pin_memory=True):
               C processes decode, the main process feeds the GPU
  parallelrun  `parallelrun run` with one worker (`environment.gpu.count: 1`,
               `processCountPerNode: 1`) and `preprocessProcesses: C`: preprocess(path)
               decodes, run() feeds the GPU

Both use C decoding processes and one that feeds the GPU, the same decode function and the
same model code. Each is timed from its first batch's compute start to its last one's end
(CLOCK_MONOTONIC stamps, read from its output), which leaves out start-up, the model's load
and (parallelrun) planning and the merge; images/s = images / that span. Target: parallelrun
>= 0.9x the loader's images/s (the median of the pairs' ratios), for each C.

    python bench/bench_gpu_preprocess.py
    python bench/bench_gpu_preprocess.py --images 8192 --batch 128 --cpus 4,8,15 --repeat 3

Run by hand on a machine with a GPU; never part of CI.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import make_images, output_lines, span
from bench_prefetch import timed

COMMON = '''
import json, os, time
import numpy as np
import torch
import torchvision
from PIL import Image


def decode(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR))


def load_model():
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = getattr(torchvision.models, os.environ["BENCH_MODEL"])(weights=None)
    model = model.eval().to("cuda", torch.bfloat16, memory_format=torch.channels_last)
    with torch.inference_mode():  # cuDNN picks its kernels now, not in the first batch
        model(torch.zeros(int(os.environ["BENCH_BATCH"]), 3, 224, 224, device="cuda", dtype=torch.bfloat16))
    torch.cuda.synchronize()
    return model


def score(model, pixels):
    """Labels of a uint8 NHWC batch (a CPU tensor)."""
    x = pixels.to("cuda", non_blocking=True).permute(0, 3, 1, 2)
    x = x.to(torch.bfloat16).div_(255).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return model(x).argmax(1).tolist()
'''

SCORE = COMMON + '''
model = None


def init():
    global model
    model = load_model()


def preprocess(path):
    return os.path.basename(path), decode(path)


def run(mini_batch):
    start = time.monotonic()
    names, arrays = zip(*mini_batch)
    labels = score(model, torch.from_numpy(np.stack(arrays)).pin_memory())
    end = time.monotonic()
    return [json.dumps([name, label, start, end]) for name, label in zip(names, labels)]
'''

LOADER = COMMON + '''
import sys
from torch.utils.data import DataLoader, Dataset


class Images(Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return os.path.basename(self.paths[i]), decode(self.paths[i])


def main(folder, out, workers):
    model = load_model()
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    loader = DataLoader(Images(paths), batch_size=int(os.environ["BENCH_BATCH"]), num_workers=workers,
                        pin_memory=True)
    with open(out, "w") as f:
        for names, pixels in loader:
            start = time.monotonic()
            labels = score(model, pixels)
            end = time.monotonic()
            f.writelines(json.dumps([name, label, start, end]) + "\\n" for name, label in zip(names, labels))


main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
'''


def job_file(workdir: Path, name: str, data: Path, batch: int, cpus: int) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"""apiVersion: parallelrun.dev/v1alpha1
kind: BatchInferenceJob
metadata: {{name: {name}}}
spec:
  input: {{uri: "{data}/", type: files}}
  code: {{uri: {workdir}/, entryScript: score.py}}
  output: {{uri: {workdir}/out-{name}/}}
  environment: {{gpu: {{count: 1}}}}
  miniBatchSize: {batch}
  processCountPerNode: 1
  preprocessProcesses: {cpus}
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=64, help="images per batch (mini-batch)")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--model", default="resnet50", help="a torchvision.models function")
    parser.add_argument("--cpus", default="8", help="decoding processes, a comma-separated list")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch

    if not torch.cuda.device_count():
        sys.exit("no CUDA GPU visible: this benchmark needs one")
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}; {os.cpu_count()} CPUs", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="parallelrun-bench-gpu-preprocess-"))
    (workdir / "score.py").write_text(SCORE)
    (workdir / "loader.py").write_text(LOADER)
    data = workdir / "images"
    data.mkdir()
    images = make_images(args.images, args.width, args.height)
    for name, jpeg in images.items():
        (data / name).write_bytes(jpeg)
    env = dict(os.environ, BENCH_MODEL=args.model, BENCH_BATCH=str(args.batch),
               CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0])
    verdicts = []
    for cpus in (int(c) for c in args.cpus.split(",")):
        job = job_file(workdir, f"preprocess-{cpus}", data, args.batch, cpus)
        rates: dict[str, list[float]] = {"loader": [], "parallelrun": []}
        ratios = []
        load = os.getloadavg()[0]
        for i in range(args.repeat):
            order = ["loader", "parallelrun"] if i % 2 == 0 else ["parallelrun", "loader"]
            for name in order:
                if name == "loader":
                    out = workdir / f"loader-{cpus}.jsonl"
                    done = subprocess.run([sys.executable, str(workdir / "loader.py"), str(data), str(out), str(cpus)],
                                          env=env, capture_output=True, text=True)
                    if done.returncode:
                        sys.exit(f"the loader failed:\n{done.stderr[-3000:]}")
                    lines = out.read_text().splitlines()
                else:
                    timed(job, env)
                    lines = output_lines(workdir, f"preprocess-{cpus}")
                rates[name].append(args.images / span(lines, args.images, name))
                print(f"C={cpus} round {i + 1}: {name:<12} {rates[name][-1]:8.1f} images/s", flush=True)
            ratios.append(rates["parallelrun"][-1] / rates["loader"][-1])
        ratio = statistics.median(ratios)
        verdicts.append(ratio >= 0.9)
        print(f"C={cpus}: loader {statistics.median(rates['loader']):.1f} images/s, parallelrun "
              f"{statistics.median(rates['parallelrun']):.1f} images/s; parallelrun / loader per pair "
              f"{', '.join(f'{r:.2f}' for r in ratios)}, median {ratio:.2f} (target >= 0.9: "
              f"{'PASS' if verdicts[-1] else 'MISS'}); load average {load:.2f} before, {os.getloadavg()[0]:.2f} after",
              flush=True)
    size = sum(map(len, images.values())) / len(images)
    print(f"\n{args.images} JPEGs of {args.width}x{args.height} (mean {size / 1024:.0f} KiB), {args.model} bf16, "
          f"{args.batch} a batch: {'PASS' if all(verdicts) else 'MISS'}")


if __name__ == "__main__":
    main()
