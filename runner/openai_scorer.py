"""The built-in scorer of `code: {builtin: openai}`: OpenAI Batch JSONL sent to an
OpenAI-compatible endpoint (vLLM, TGI, Azure OpenAI, OpenAI), one output line per input
line, in plan order.

Input lines are requests, `{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body": {...}}`; each output line is `{"custom_id", "response": {"status_code",
"request_id", "body"}, "error": null}`, or, for a request that failed, `error: {"code",
"message"}` (and `response` where the server answered). A failed request is a failed item,
listed in errors.jsonl with the server's answer; the others of its mini-batch succeed.

`run` is async: every request of a mini-batch is in flight at once, and with
miniBatchesInFlight so are several mini-batches, all paced by one RateLimit per worker
(its share of the job's requestsPerMinute and tokensPerMinute). A 429 and its
Retry-After hold back every request of the worker; a 429, 408, 5xx, a timeout or a lost
connection is retried with exponential backoff, up to maxRetries times; any other 4xx fails the
request at once. Tokens are estimated before sending (the prompt's characters / 4, plus
max_tokens) and settled by the response's usage.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from collections import Counter
from typing import Any

from parallelrun.runner.contract import OPENAI_API_KEY_ENV
from parallelrun.runner.extras import install_hint
from parallelrun.runner.outputs import ItemError, Results
from parallelrun.runner.ratelimit import RateLimit
from parallelrun.runner.spec import OPENAI_SETTINGS_ENV, OpenAISettings

log = logging.getLogger("parallelrun.openai")

SERVED = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")  # OpenAI's batch urls
BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 0.5, 30.0
ERROR_TEXT_LIMIT = 4000  # characters of a server's answer kept in an error

settings: OpenAISettings | None = None
limit: RateLimit | None = None
headers: dict[str, str] = {}
_client: Any = None  # httpx.AsyncClient, made on the event loop that runs run()
_client_loop: asyncio.AbstractEventLoop | None = None


def init() -> None:
    global settings, limit, headers
    try:
        import httpx  # noqa: F401 - checked here: a missing install stops the run at once, with the fix
    except ImportError as e:
        raise ImportError(install_hint(e, needed_for="code: {builtin: openai}")
                          or "httpx is not installed; pip install 'parallelrun[openai]'") from None
    settings = OpenAISettings.from_dict(json.loads(os.environ[OPENAI_SETTINGS_ENV]))
    limit = RateLimit(settings.requests_per_minute, settings.tokens_per_minute)
    key = _api_key(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}


def _api_key(s: OpenAISettings) -> str | None:
    if s.api_key_env:
        key = os.environ.get(s.api_key_env)
        if not key:
            raise RuntimeError(f"spec.code.openai.apiKey.env: {s.api_key_env} is not set where the job runs; "
                               "export it (local mode) or add it to spec.environment.env or envFrom")
        return key
    if s.api_key_secret:
        key = os.environ.get(OPENAI_API_KEY_ENV)
        if not key:
            raise RuntimeError(f"spec.code.openai.apiKey.secretKeyRef: the key comes from Secret "
                               f"{s.api_key_secret[0]} on a cluster; in local mode set {OPENAI_API_KEY_ENV}, "
                               "or give apiKey: {env: NAME}")
        return key
    return None


async def shutdown() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


def _http():
    """The client of the running event loop (made on the first call of run() on it)."""
    global _client, _client_loop
    import httpx

    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop:
        assert settings is not None, "init() ran"
        _client = httpx.AsyncClient(timeout=httpx.Timeout(settings.request_timeout, pool=None),
                                    limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        _client_loop = loop
    return _client


async def run(mini_batch) -> Results:
    """One output line per request line, in order; the failed requests named in `errors`."""
    lines = mini_batch["line"].tolist()
    requests: list[dict | None] = []
    rows: list[dict | None] = [None] * len(lines)
    errors: list[tuple[int, ItemError]] = []  # by line, for errors.jsonl in plan order
    for i, line in enumerate(lines):  # each custom_id is once in the input: the plan checked it (custom_ids.py)
        request, problem = parse_request(line)
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        if problem is not None:
            name = custom_id if isinstance(custom_id, str) and custom_id else f"line {i + 1} of the mini-batch"
            rows[i] = _line(custom_id if isinstance(custom_id, str) else None, None,
                            {"code": "invalid_request", "message": problem})
            errors.append((i, ItemError(name, problem)))
        requests.append(request if problem is None else None)
    sent = [(i, r) for i, r in enumerate(requests) if r is not None]
    outcomes = await asyncio.gather(*(send(r) for _, r in sent))
    retries: Counter[str] = Counter()
    for (i, request), (row, error, tried) in zip(sent, outcomes):
        rows[i] = row
        retries.update(tried)
        if error is not None:
            errors.append((i, ItemError(request["custom_id"], error)))
    if retries:
        log.info("%d requests sent, retried: %s", len(sent), ", ".join(f"{k} x{n}" for k, n in sorted(retries.items())))
    return Results(rows, [error for _, error in sorted(errors, key=lambda e: e[0])])


def parse_request(line: str) -> tuple[Any, str | None]:
    """(the request, None), or (what could be read, why it cannot be sent)."""
    try:
        request = json.loads(line)
    except ValueError as e:
        return None, f"not a JSON line ({e}); each line is one request object"
    if not isinstance(request, dict):
        return request, f"a JSON {type(request).__name__}, not a request object"
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return request, "has no custom_id; give each request a unique custom_id (a string)"
    if request.get("method", "POST") != "POST":
        return request, f"method {request.get('method')!r} is not served; batch requests are POST"
    if request.get("url") not in SERVED:
        return request, f"url {request.get('url')!r} is not served; use one of {', '.join(SERVED)}"
    if not isinstance(request.get("body"), dict):
        return request, "has no body object; give the request's JSON body"
    return request, None


def estimate_tokens(body: dict) -> int:
    """The tokens a request may count: its prompt's characters / 4, plus the completion's maximum."""
    prompt = body.get("messages", body.get("prompt", body.get("input", "")))
    text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    most = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens") or 0
    return len(text) // 4 + (most if isinstance(most, int) else 0)


async def send(request: dict) -> tuple[dict, str | None, list[str]]:
    """(its output line, its error or None, what each retry was for)."""
    assert settings is not None and limit is not None, "init() ran"
    body = dict(request["body"], model=settings.model) if settings.model else request["body"]
    url = settings.endpoint + request["url"].removeprefix("/v1")
    custom_id, estimate = request["custom_id"], estimate_tokens(body)
    tried: list[str] = []
    import httpx

    client = _http()  # made before its turn: making it must not delay the request past the turn
    for attempt in range(settings.max_retries + 1):
        await limit.acquire(estimate)
        wait = None
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            why = "timeout"
            message = f"no answer within {settings.request_timeout} s (spec.code.openai.requestTimeout)"
        except httpx.TransportError as e:
            why, message = "connection", f"{type(e).__name__}: {e}"
        else:
            status = response.status_code
            if status < 300:
                answer = response.json()
                usage = answer.get("usage") if isinstance(answer, dict) else None
                if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
                    limit.settle(estimate, usage["total_tokens"])
                return _line(custom_id, _response(response, answer), None), None, tried
            text = response.text[:ERROR_TEXT_LIMIT]
            message = f"HTTP {status}: {text}"
            if status not in (408, 429) and status < 500:  # the request itself is refused: retrying repeats it
                error = {"code": _error_code(response), "message": message}
                return _line(custom_id, _response(response, _json(response)), error), message, tried
            why, wait = str(status), retry_after(response.headers.get("retry-after"))
            if status == 429:
                limit.pause(wait if wait is not None else _backoff(attempt))
        if attempt == settings.max_retries:
            break
        tried.append(why)
        delay = wait if wait is not None else _backoff(attempt)
        log.warning("request %s: %s; retry %d/%d in %.1f s", custom_id, message[:200], attempt + 1,
                    settings.max_retries, delay)
        await asyncio.sleep(delay)
    message = f"{message} (after {settings.max_retries} retries)"
    return _line(custom_id, None, {"code": "retries_exhausted", "message": message}), message, tried


def _backoff(attempt: int) -> float:
    """Exponential, with jitter: retries of many requests do not arrive together."""
    return min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2**attempt) * random.uniform(0.5, 1.0)


def retry_after(value: str | None) -> float | None:
    """Retry-After's seconds (a number of seconds, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _line(custom_id: str | None, response: dict | None, error: dict | None) -> dict:
    return {"custom_id": custom_id, "response": response, "error": error}


def _response(response, body) -> dict:
    return {"status_code": response.status_code, "request_id": response.headers.get("x-request-id"), "body": body}


def _json(response):
    """The answer's JSON, else its text."""
    try:
        return response.json()
    except ValueError:
        return response.text[:ERROR_TEXT_LIMIT]


def _error_code(response) -> str:
    """The error's code where the body gives one (OpenAI's `{"error": {"code"}}`), else http_<status>."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else f"http_{response.status_code}"
