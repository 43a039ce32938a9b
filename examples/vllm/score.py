"""Batch generation with vLLM's async engine: one engine per GPU worker, kept busy by many
mini-batches in flight.

init() makes the engine on the worker's event loop; run() is async, so with
`miniBatchesInFlight: 32` the worker hands the engine the prompts of 32 mini-batches at
once. vLLM batches them continuously: a finished generation's place goes to a waiting
prompt at the next step, so one long answer no longer holds up the mini-batches after it
(one mini-batch at a time, the engine waits for each mini-batch's longest answer). A call
cancelled by runInvocationTimeout stops its generators, and vLLM aborts their requests.

Input: jsonl rows with `id` and `prompt`. Output: one row per prompt, `id` and `completion`.
Arguments: --model (default: the job's model.uri, PARALLELRUN_MODEL_DIR), --max-tokens,
--max-num-seqs, --gpu-memory-utilization.
"""

import argparse
import asyncio
import os
import uuid

import pandas as pd
from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams


async def init():
    global engine, sampling
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.environ.get("PARALLELRUN_MODEL_DIR"))
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    args, _ = parser.parse_known_args()
    engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(
        model=args.model, max_num_seqs=args.max_num_seqs, gpu_memory_utilization=args.gpu_memory_utilization))
    sampling = SamplingParams(temperature=0.0, max_tokens=args.max_tokens)


async def complete(prompt: str) -> str:
    final = None
    async for output in engine.generate(prompt, sampling, request_id=uuid.uuid4().hex):
        final = output
    return final.outputs[0].text


async def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    completions = await asyncio.gather(*(complete(prompt) for prompt in mini_batch["prompt"]))
    return pd.DataFrame({"id": mini_batch["id"], "completion": completions})
