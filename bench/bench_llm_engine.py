"""An LLM engine with continuous batching, kept busy by many mini-batches in flight:
examples/vllm unchanged, against the stand-in for vLLM's async engine
(tests/standin_vllm/vllm.py: a step every 10 ms for every request it holds, up to
`--max-num-seqs`, one token each; long-tailed generation lengths, median 16 tokens).

`--prompts` prompts (prepare.py), `--mini-batch` prompts per run() call, one worker (one
GPU's engine), two jobs alternately, `--repeat` times:

  one        miniBatchesInFlight 1: one mini-batch in the engine at a time, each waiting
             for its longest generation
  in-flight  miniBatchesInFlight `--in-flight` (32): the engine's batch refilled as
             generations finish

A job's scoring time is the engine's: from its first request to its last generation's
end; the ideal is the engine's steps when it is always full, (sum of tokens / max-num-seqs,
no less than the longest generation) x 10 ms. Beside it, the time `parallelrun run`
prints. Targets: in-flight within 1.5x of the ideal, and at least 3x faster than one at a
time (issue 19, point 5); the outputs identical.

    python bench/bench_llm_engine.py
    python bench/bench_llm_engine.py --prompts 512 --repeat 3

Run by hand; never part of CI.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "vllm"
STANDIN = ROOT / "tests" / "standin_vllm" / "vllm.py"


def standin():
    spec = importlib.util.spec_from_file_location("standin_vllm", STANDIN)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(overrides: list[str], stats: Path, output: Path) -> tuple[float, float, float, str]:
    """(wall seconds, the seconds `parallelrun run` prints, the engine's scoring seconds, output digest)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(EXAMPLE / "job.yaml"), "--fresh",
                           *(a for o in overrides for a in ("--set", o))],
                          env={**os.environ, "STANDIN_VLLM_STATS": str(stats)}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"the job failed:\n{done.stderr[-3000:]}")
    engine = json.loads(stats.read_text())
    printed = float(re.search(r"time: ([\d.]+)s", done.stderr).group(1))
    return wall, printed, engine["last"] - engine["first"], hashlib.sha256(output.read_bytes()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--mini-batch", type=int, default=8, help="prompts per run() call (miniBatchSize)")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    engine = standin()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, str(EXAMPLE / "prepare.py"), "--prompts", str(args.prompts), "--files", "2",
                        "--data-dir", str(work / "prompts")], check=True, capture_output=True)
        (work / "code").mkdir()
        shutil.copy(EXAMPLE / "score.py", work / "code")
        shutil.copy(STANDIN, work / "code")
        prompts = [json.loads(line)["prompt"] for f in sorted((work / "prompts").glob("*.jsonl")) for line in f.open()]
        counts = [engine.tokens(p, args.max_tokens) for p in prompts]
        ideal = max(sum(counts) / args.max_num_seqs, max(counts)) * engine.STEP_SECONDS
        batches = [counts[i:i + args.mini_batch] for i in range(0, len(counts), args.mini_batch)]
        one_ideal = sum(max(b) for b in batches) * engine.STEP_SECONDS
        common = [f"input.uri={work}/prompts/", f"code.uri={work}/code/", "processCountPerNode=1",
                  f"miniBatchSize={args.mini_batch}",
                  f"arguments=[--model, stand-in, --max-tokens, '{args.max_tokens}', --max-num-seqs, "
                  f"'{args.max_num_seqs}']"]
        jobs = {"one": 1, "in-flight": args.in_flight}
        scoring: dict[str, list[float]] = {name: [] for name in jobs}
        digests = set()
        for r in range(args.repeat):
            for name in list(jobs) if r % 2 == 0 else list(jobs)[::-1]:
                output = work / f"out-{name}"
                wall, printed, seconds, digest = timed(
                    [*common, f"miniBatchesInFlight={jobs[name]}", f"output.uri={output}/"], work / "stats.json",
                    output / "completions.jsonl")
                scoring[name].append(seconds)
                digests.add(digest)
                print(f"round {r + 1} {name:9s} scoring {seconds:6.2f} s  time {printed:6.2f} s  wall {wall:6.2f} s  "
                      f"output {digest}  (load {os.getloadavg()[0]:.2f})", flush=True)
    best = {name: min(s) for name, s in scoring.items()}
    gain = best["one"] / best["in-flight"]
    print(f"{len(prompts)} prompts, {sum(counts):,} tokens (median {sorted(counts)[len(counts) // 2]}, "
          f"longest {max(counts)}); ideal {ideal:.2f} s; in-flight {best['in-flight']:.2f} s = "
          f"{best['in-flight'] / ideal:.2f}x the ideal; one at a time {best['one']:.2f} s (its own ideal "
          f"{one_ideal:.2f} s): in flight {gain:.1f}x faster")
    verdicts = [("in-flight within 1.5x of the ideal", best["in-flight"] <= 1.5 * ideal),
                ("in-flight at least 3x faster than one at a time", gain >= 3),
                ("outputs identical", len(digests) == 1)]
    for what, ok in verdicts:
        print(f"{'PASS' if ok else 'MISS'} {what}")


if __name__ == "__main__":
    main()
