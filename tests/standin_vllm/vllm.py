"""A stand-in for vLLM's async engine where vLLM cannot run (no GPU): the interface the
vllm example uses, and continuous batching's timing.

`AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=...))`, and
`generate(prompt, sampling_params, request_id)`: an async generator of RequestOutput
(`outputs[0].text`, `finished`), as vLLM's. The engine runs a step every STEP_SECONDS for
all the requests it holds (up to `max_num_seqs`), one token each: a request's latency is its
token count in steps, whatever else runs beside it. A prompt's token count is long-tailed
(log-normal, median 16, at most `max_tokens`) and the same on every run; its text is
`completion(prompt, max_tokens)`. A request whose consumer stops (a cancelled call) is aborted.
`STANDIN_VLLM_STATS`, where set, names a file the engine keeps its figures in (JSON): `most`,
the most requests it ran at once; `first` and `last`, when (time.time()) its first request
came and its last one finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass

STEP_SECONDS = 0.01


def tokens(prompt: str, max_tokens: int) -> int:
    """How many tokens the engine generates for `prompt`: long-tailed, the same every run."""
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    return max(1, min(max_tokens, math.ceil(rng.lognormvariate(math.log(16), 1.0))))


def completion(prompt: str, max_tokens: int) -> str:
    """The text generated for `prompt`."""
    words = prompt.split() or ["-"]
    return " ".join(words[i % len(words)].upper() for i in range(tokens(prompt, max_tokens)))


class AsyncEngineArgs:
    def __init__(self, model: str, max_num_seqs: int = 256, **_options):
        self.model, self.max_num_seqs = model, max_num_seqs


class SamplingParams:
    def __init__(self, temperature: float = 1.0, max_tokens: int = 16, **_options):
        self.temperature, self.max_tokens = temperature, max_tokens


@dataclass
class CompletionOutput:
    index: int
    text: str
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    outputs: list[CompletionOutput]
    finished: bool


class _Request:
    def __init__(self, request_id: str, prompt: str, params: SamplingParams):
        self.id, self.prompt = request_id, prompt
        self.words = completion(prompt, params.max_tokens).split()
        self.done = 0
        self.outputs: asyncio.Queue[RequestOutput] = asyncio.Queue()


class AsyncLLMEngine:
    @classmethod
    def from_engine_args(cls, engine_args: AsyncEngineArgs) -> AsyncLLMEngine:
        return cls(engine_args)

    def __init__(self, engine_args: AsyncEngineArgs):
        self.max_num_seqs = engine_args.max_num_seqs
        self.waiting: list[_Request] = []
        self.running: dict[str, _Request] = {}
        self.most = 0  # requests run at once, at most
        self.first: float | None = None  # when its first request came
        self._stepping: asyncio.Task | None = None

    async def generate(self, prompt: str, sampling_params: SamplingParams, request_id: str):
        if request_id in self.running or any(r.id == request_id for r in self.waiting):
            raise ValueError(f"Request {request_id} already exists.")
        request = _Request(request_id, prompt, sampling_params)
        self.first = self.first or time.time()
        self.waiting.append(request)
        if self._stepping is None or self._stepping.done():
            self._stepping = asyncio.get_running_loop().create_task(self._steps())
        try:
            while True:
                output = await request.outputs.get()
                yield output
                if output.finished:
                    return
        finally:  # finished, or its consumer stopped: aborted
            self.running.pop(request_id, None)
            if request in self.waiting:
                self.waiting.remove(request)

    async def _steps(self) -> None:
        """A step every STEP_SECONDS on a steady clock, as a GPU's: handing out one step's tokens
        overlaps the next step."""
        loop = asyncio.get_running_loop()
        step = loop.time()
        while self.waiting or self.running:
            while self.waiting and len(self.running) < self.max_num_seqs:
                request = self.waiting.pop(0)
                self.running[request.id] = request
            self.most = max(self.most, len(self.running))
            step += STEP_SECONDS
            await asyncio.sleep(max(0.0, step - loop.time()))
            for request in list(self.running.values()):
                request.done += 1
                finished = request.done == len(request.words)
                if finished:
                    del self.running[request.id]
                text = " ".join(request.words[:request.done])
                request.outputs.put_nowait(RequestOutput(request.id, request.prompt, [
                    CompletionOutput(0, text, "length" if finished else None)], finished))
        if os.environ.get("STANDIN_VLLM_STATS"):  # idle: all it was given is done
            with open(os.environ["STANDIN_VLLM_STATS"], "w") as f:
                json.dump({"most": self.most, "first": self.first, "last": time.time()}, f)
