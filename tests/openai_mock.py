"""A local OpenAI-compatible server that answers, throttles and fails as each request asks.

A request's last message (or prompt, or input) says what the server does with it, each
attempt in turn, then answers: `fail 400` refuses it with an error body; `503 503`
fails it twice with 503 and then answers; `429` throttles it once with a Retry-After of
RETRY_AFTER seconds; `slow` answers its first attempt only after `slow_seconds` (a
client's timeout); anything else is answered at once, counting the prompt's characters / 4
and all of max_tokens as its usage. Every request's arrival time and text (`arrivals`),
and every answer's tokens (`tokens`), are recorded, so a test measures the rates the
server saw.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict

from aiohttp import web

RETRY_AFTER = "1"
SERVED = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}


class MockEndpoint:
    def __init__(self, slow_seconds: float = 5.0, api_key: str | None = None, served: set[str] = SERVED):
        self.slow_seconds, self.api_key, self.served = slow_seconds, api_key, served
        self.arrivals: list[tuple[float, str]] = []  # (monotonic time, the request's text)
        self.attempts: dict[str, int] = defaultdict(int)
        self.answers: list[tuple[str, int]] = []  # (text, status) of each answer
        self.tokens: list[tuple[float, int]] = []  # (monotonic time, tokens counted) of each answered request
        self.lock = threading.Lock()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> MockEndpoint:
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        assert started.wait(10), "the mock server did not start"
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _stop(self) -> None:
        """Close the server; answers still pending (a hung request) are cancelled."""
        assert self._runner is not None
        await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _serve(self, started: threading.Event) -> None:
        self._loop = loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)  # a hung answer does not hold the test up
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        started.set()
        loop.run_forever()

    def rates(self, window: float) -> list[int]:
        """The requests that arrived in each `window` seconds from the first one's arrival."""
        times = sorted(t for t, _ in self.arrivals)
        return [sum(1 for t in times if start <= t < start + window) for start in times]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        text = _text(body)
        with self.lock:
            self.arrivals.append((time.monotonic(), text))
            attempt = self.attempts[text]
            self.attempts[text] += 1
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._answer(text, 401, {"error": {"message": "Incorrect API key provided",
                                                      "code": "invalid_api_key"}})
        if request.path not in self.served:
            return self._answer(text, 404, {"detail": "Not Found"})
        steps = text.split()
        step = steps[attempt] if attempt < len(steps) else "ok"
        if step == "fail":
            return self._answer(text, int(steps[1]), {"error": {"message": f"refused: {text}",
                                                                "code": "invalid_value"}})
        if step.isdigit() and int(step) >= 400:
            headers = {"Retry-After": RETRY_AFTER} if step == "429" else {}
            return self._answer(text, int(step), {"error": {"message": "try again", "code": None}}, headers)
        if step == "slow":
            await asyncio.sleep(self.slow_seconds)
        tokens = max(1, len(text) // 4)
        completion = body.get("max_tokens", tokens)  # a model that writes as much as it may
        if request.path == "/v1/embeddings":
            answer: dict = {"object": "list", "data": [{"object": "embedding", "index": 0,
                                                        "embedding": [float(len(text)), 1.0]}]}
        else:
            answer = {"object": "chat.completion", "model": body.get("model"),
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {text}"},
                                   "finish_reason": "stop"}]}
        answer["usage"] = {"prompt_tokens": tokens, "completion_tokens": completion,
                           "total_tokens": tokens + completion}
        with self.lock:
            self.tokens.append((time.monotonic(), tokens + completion))
        return self._answer(text, 200, answer, {"x-request-id": f"req-{len(self.arrivals)}"})

    def _answer(self, text: str, status: int, body: dict, headers: dict | None = None) -> web.Response:
        with self.lock:
            self.answers.append((text, status))
        return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                            headers=headers)


def _text(body: dict) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return str(messages[-1].get("content", ""))
    return str(body.get("prompt", body.get("input", "")))


def request_line(custom_id: str, text: str, url: str = "/v1/chat/completions", **body) -> str:
    """One line of OpenAI Batch JSONL."""
    payload = {"model": "test-model", "messages": [{"role": "user", "content": text}], **body} \
        if url == "/v1/chat/completions" else {"model": "test-model", "input": text, **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": payload})
