"""code: {builtin: openai} — OpenAI Batch JSONL scored against a local endpoint that
throttles and fails (tests/openai_mock.py): one output line per request, in plan order;
refused requests are failed items with the server's answer in errors.jsonl; 429, 5xx and
timeouts retried; the job's requestsPerMinute held at the server across workers."""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from openai_mock import MockEndpoint, request_line
from rich.console import Console

from parallelrun.runner import openai_scorer
from parallelrun.runner.local import LocalRunError, run_local
from parallelrun.runner.planning import PlanError
from parallelrun.runner.ratelimit import RateLimit
from parallelrun.runner.spec import OpenAISettings, SpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def write_job(root: Path, lines: list[str], endpoint: str, **spec) -> Path:
    (root / "batch.jsonl").write_text("".join(line + "\n" for line in lines))
    openai = {"endpoint": endpoint, "requestTimeout": 1, "maxRetries": 3, **spec.pop("openai", {})}
    full = {"input": {"uri": "batch.jsonl", "type": "tabular", "format": "jsonl"},
            "code": {"builtin": "openai", "openai": openai}, "output": {"uri": "output/", "fileName": "results.jsonl"},
            "miniBatchSize": 5, "nodeCount": 1, "processCountPerNode": 1, "miniBatchesInFlight": 4, **spec}
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                                    "metadata": {"name": "llm"}, "spec": full}))
    return path


def results(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "output" / "results.jsonl").read_text().splitlines()]


def errors_of(summary: dict) -> list[dict]:
    return [json.loads(line) for line in open(summary["errors"])]


# -- the whole job ----------------------------------------------------------------------------

def test_every_request_once_in_plan_order_failures_listed_retries_done(tmp_path):
    texts = [f"q{i}" for i in range(24)]
    texts[3], texts[7], texts[11], texts[15], texts[19] = "fail 400", "503 503", "429", "slow", "500"
    lines = [request_line(f"r{i}", t) for i, t in enumerate(texts)]
    lines.insert(9, request_line("e0", "embed me", url="/v1/embeddings"))
    with MockEndpoint(slow_seconds=3) as server:
        summary = quiet_run(write_job(tmp_path, lines, server.url, nodeCount=2))
    out = results(tmp_path)
    ids = [json.loads(line)["custom_id"] for line in lines]
    assert [r["custom_id"] for r in out] == ids  # plan order, every request once
    assert summary["items"] == {"succeeded": len(lines) - 1, "failed": 1}
    refused = out[ids.index("r3")]
    assert refused["response"]["status_code"] == 400 and refused["error"]["code"] == "invalid_value"
    [error] = errors_of(summary)
    assert error["item"] == "r3" and 'HTTP 400: {"error": {"message": "refused: fail 400"' in error["error"]
    for i in (7, 11, 15, 19):
        assert out[ids.index(f"r{i}")]["response"]["body"]["choices"][0]["message"]["content"] == f"echo: {texts[i]}"
    assert out[ids.index("e0")]["response"]["body"]["data"][0]["embedding"] == [8.0, 1.0]
    # retries, seen at the server: two 503s then an answer; a 429 then one; a timeout then one; a 500 then one
    assert (server.attempts["503 503"], server.attempts["429"], server.attempts["slow"], server.attempts["500"]) \
        == (3, 2, 2, 2)
    assert server.attempts["fail 400"] == 1  # a refusal is not retried


def test_invalid_lines_fail_alone_with_clear_errors(tmp_path):
    lines = [request_line("a", "q"), "{not json", json.dumps({"method": "POST", "url": "/v1/chat/completions",
                                                               "body": {}}),
             request_line("b", "q", url="/v1/images/generations"),
             json.dumps({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}}),
             json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions", "body": "text"}),
             request_line("d", "fine")]
    with MockEndpoint() as server:
        summary = quiet_run(write_job(tmp_path, lines, server.url, miniBatchSize=10))
    assert summary["items"] == {"succeeded": 2, "failed": 5}
    out = results(tmp_path)
    assert [r["custom_id"] for r in out] == ["a", None, None, "b", "c", "e", "d"]
    assert [r["error"]["code"] if r["error"] else None for r in out] == [None] + ["invalid_request"] * 5 + [None]
    errors = {e["item"]: e["error"] for e in errors_of(summary)}
    assert "not a JSON line" in errors["line 2 of the mini-batch"]
    assert "has no custom_id" in errors["line 3 of the mini-batch"]
    assert "url '/v1/images/generations' is not served; use one of /v1/chat/completions" in errors["b"]
    assert "method 'GET' is not served" in errors["c"]
    assert "has no body object" in errors["e"]
    assert sorted(server.attempts) == ["fine", "q"]  # nothing invalid was sent


@pytest.mark.parametrize("layout", ["one mini-batch", "two mini-batches", "two files", "gzip"])
def test_a_custom_id_given_twice_stops_the_plan_before_any_request(tmp_path, layout):
    first = [request_line(f"r{i}", "q") for i in range(4)]
    second = [request_line("x", "q"), "not json, no custom_id", request_line("r1", "again")]
    with MockEndpoint() as server:
        job = write_job(tmp_path, first + ([] if layout in ("two files", "gzip") else second), server.url,
                        miniBatchSize=10 if layout == "one mini-batch" else 2,
                        input={"uri": ".", "type": "tabular", "format": "jsonl", "pattern": "*.jsonl*"})
        if layout == "two files":
            (tmp_path / "more.jsonl").write_text("".join(line + "\n" for line in second))
        elif layout == "gzip":
            (tmp_path / "more.jsonl.gz").write_bytes(gzip.compress("".join(line + "\n" for line in second).encode()))
        with pytest.raises(PlanError) as raised:
            quiet_run(job)
    where = "batch.jsonl line 7" if layout.endswith("mini-batches") or layout == "one mini-batch" \
        else f"more.jsonl{'.gz' if layout == 'gzip' else ''} line 3"
    assert "custom_id 'r1' is given twice:" in str(raised.value) and "batch.jsonl line 2 and" in str(raised.value)
    assert where in str(raised.value) and "give every request a unique custom_id" in str(raised.value)
    assert server.arrivals == []


def test_an_endpoint_that_does_not_serve_the_url_fails_those_requests(tmp_path):
    lines = [request_line("a", "q"), request_line("b", "q2", url="/v1/completions")]
    with MockEndpoint(served={"/v1/chat/completions"}) as server:
        summary = quiet_run(write_job(tmp_path, lines, server.url))
    [error] = errors_of(summary)
    assert error["item"] == "b" and error["error"].startswith("HTTP 404")
    assert results(tmp_path)[1]["error"]["code"] == "http_404"


@pytest.mark.parametrize("workers", [(1, 2), (2, 1), (2, 2)])
def test_the_requests_per_minute_hold_at_the_server_for_the_whole_run(tmp_path, workers):
    """600 a minute (10 a second) over ~4 s, however many workers share it, throttled retries included."""
    nodes, processes = workers
    texts = [f"q{i}" for i in range(36)] + ["429", "503"]
    with MockEndpoint() as server:
        summary = quiet_run(write_job(tmp_path, [request_line(f"r{i}", t) for i, t in enumerate(texts)], server.url,
                                      nodeCount=nodes, processCountPerNode=processes, miniBatchSize=3,
                                      openai={"requestsPerMinute": 600}))
    assert summary["items"] == {"succeeded": len(texts), "failed": 0}
    times = sorted(t for t, _ in server.arrivals)
    assert len(times) == len(texts) + 2  # the retries count against the limit too
    rate = (len(times) - 1) / (times[-1] - times[0]) * 60
    assert rate <= 600 * 1.05, f"{rate:.0f} requests a minute"
    workers_total = nodes * processes
    assert max(server.rates(1.0)) <= 10 + workers_total  # any second: its share each, one at each edge


def test_the_tokens_per_minute_hold_at_the_server(tmp_path):
    """3,000 tokens a minute (50 a second), each request ~25 tokens by its usage: about two a second."""
    texts = [f"question {i:02d}" for i in range(12)]
    with MockEndpoint() as server:
        summary = quiet_run(write_job(tmp_path, [request_line(f"r{i}", t, max_tokens=22) for i, t in enumerate(texts)],
                                      server.url, nodeCount=2, miniBatchSize=2, openai={"tokensPerMinute": 3000}))
    assert summary["items"] == {"succeeded": len(texts), "failed": 0}
    counted = sorted(server.tokens)
    span = counted[-1][0] - counted[0][0]
    rate = sum(tokens for _, tokens in counted[:-1]) / span * 60  # each request's tokens pace the next one's turn
    assert rate <= 3000 * 1.05, f"{rate:.0f} tokens a minute"
    assert span >= 4.0  # ~275 tokens at 50 a second: not sent at once


def test_a_mini_batch_whose_call_overran_is_run_again_and_written_once(tmp_path):
    """runInvocationTimeout cancels a call whose request hangs; its retry sends the mini-batch again,
    and the output has each request once (real worker processes)."""
    texts = [f"q{i}" for i in range(8)]
    texts[5] = "slow"
    with MockEndpoint(slow_seconds=30) as server:
        summary = quiet_run(write_job(tmp_path, [request_line(f"r{i}", t) for i, t in enumerate(texts)], server.url,
                                      miniBatchSize=2, runInvocationTimeout=3, openai={"requestTimeout": 60}))
    assert summary["items"] == {"succeeded": len(texts), "failed": 0}
    assert [r["custom_id"] for r in results(tmp_path)] == [f"r{i}" for i in range(len(texts))]
    assert server.attempts["slow"] == 2 and server.attempts["q4"] == 2  # its mini-batch, sent twice
    assert all(server.attempts[t] == 1 for t in texts if t not in ("slow", "q4"))


def test_the_key_is_sent_from_the_variable_named(tmp_path, monkeypatch):
    lines = [request_line("a", "q")]
    with MockEndpoint(api_key="sk-test") as server:
        for folder, key in (("right", "sk-test"), ("wrong", "sk-wrong")):
            (tmp_path / folder).mkdir()
            monkeypatch.setenv("MY_KEY", key)
            summary = quiet_run(write_job(tmp_path / folder, lines, server.url, openai={"apiKey": {"env": "MY_KEY"}}))
            assert summary["items"]["failed"] == (key == "sk-wrong")
    assert "invalid_api_key" in errors_of(summary)[0]["error"]


def test_a_missing_key_stops_the_run_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_KEY", raising=False)
    monkeypatch.delenv("PARALLELRUN_OPENAI_API_KEY", raising=False)
    with MockEndpoint() as server:
        with pytest.raises(LocalRunError, match="apiKey.env: MISSING_KEY is not set where the job runs"):
            quiet_run(write_job(tmp_path, [request_line("a", "q")], server.url,
                                openai={"apiKey": {"env": "MISSING_KEY"}}))
        with pytest.raises(LocalRunError, match="in local mode set PARALLELRUN_OPENAI_API_KEY"):
            quiet_run(write_job(tmp_path, [request_line("a", "q")], server.url,
                                openai={"apiKey": {"secretKeyRef": {"name": "k", "key": "key"}}}))


def test_the_example_runs_against_a_local_endpoint(tmp_path):
    example = ROOT / "examples" / "openai"
    with MockEndpoint() as server:
        summary = quiet_run(example / "job.yaml", overrides=[f"code.openai.endpoint={server.url}",
                                                              f"output.uri={tmp_path}/out/"])
    lines = (example / "batch.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in out] == [json.loads(line)["custom_id"] for line in lines]
    assert summary["items"] == {"succeeded": len(lines), "failed": 0}


# -- the spec ---------------------------------------------------------------------------------

def openai_spec(openai: dict | None = None, **spec) -> dict:
    return {"spec": {"input": {"uri": "/d/b.jsonl", "type": "tabular", "format": "jsonl"},
                     "code": {"builtin": "openai", "openai": {"endpoint": "http://localhost:8000/v1/", **(openai or {})}},
                     "output": {"uri": "/o/"}, **spec}}


def test_the_spec_reads_its_settings_and_gives_them_back():
    spec = load_spec(openai_spec({"apiKey": {"secretKeyRef": {"name": "aoai", "key": "k"}}, "model": "m",
                                  "requestsPerMinute": 600, "tokensPerMinute": 90000}))
    settings = spec.code.openai
    assert settings == OpenAISettings("http://localhost:8000/v1", None, ("aoai", "k"), "m", 600, 90000)
    assert spec.output.format == "jsonl" and spec.input.options == {"raw": True}
    assert load_spec({"spec": spec.to_dict()}) == spec
    assert OpenAISettings.from_dict(settings.to_dict()) == settings
    share = settings.share(4)
    assert (share.requests_per_minute, share.tokens_per_minute) == (150, 22500)
    assert settings.share(1000).requests_per_minute == 1  # never no limit at all


@pytest.mark.parametrize("doc, path, words", [
    (openai_spec({"endpoint": "localhost:8000"}), "spec.code.openai.endpoint", "is not an http(s) URL"),
    (openai_spec({"apiKey": {"env": "my-key"}}), "spec.code.openai.apiKey.env", "is not a variable name"),
    (openai_spec({"apiKey": {}}), "spec.code.openai.apiKey", "either env"),
    (openai_spec({"requestsPerMinute": 0}), "spec.code.openai.requestsPerMinute", "below the minimum 1"),
    (openai_spec({"rpm": 10}), "spec.code.openai.rpm", "unknown field"),
    (openai_spec(output={"uri": "/o/", "format": "csv"}), "spec.output.format", "use jsonl"),
    (openai_spec(input={"uri": "/d/", "type": "files"}), "spec.input", "type: tabular, format: jsonl"),
    (openai_spec(input={"uri": "/d/", "type": "tabular", "format": "jsonl", "options": {"raw": False}}),
     "spec.input.options.raw", "reads each request line as text"),
    ({"spec": {**openai_spec()["spec"], "code": {"builtin": "claude"}}}, "spec.code.builtin", "not a builtin"),
    ({"spec": {**openai_spec()["spec"], "code": {"builtin": "openai"}}}, "spec.code.openai", "required"),
    ({"spec": {**openai_spec()["spec"], "code": {"entryScript": "s.py", "openai": {}}}}, "spec.code.openai",
     "add builtin: openai"),
])
def test_spec_errors_name_the_field_and_the_fix(doc, path, words):
    with pytest.raises(SpecError) as raised:
        load_spec(doc)
    assert any(e.startswith(f"{path}:") and words in e for e in raised.value.errors), raised.value.errors


@pytest.mark.parametrize("options, words", [
    ({"raw": "yes"}, "expected true or false"),
    ({"raw": True, "columnTypes": {"a": "string"}}, "remove columnTypes"),
])
def test_raw_option_errors(options, words):
    with pytest.raises(SpecError, match=words):
        load_spec({"spec": {"input": {"uri": "/d/", "type": "tabular", "format": "jsonl", "options": options},
                            "code": {"entryScript": "s.py"}, "output": {"uri": "/o/"}}})
    with pytest.raises(SpecError, match="applies to jsonl input only"):
        load_spec({"spec": {"input": {"uri": "/d/", "type": "tabular", "format": "csv", "options": {"raw": True}},
                            "code": {"entryScript": "s.py"}, "output": {"uri": "/o/"}}})


# -- pacing, in virtual time ------------------------------------------------------------------

class VirtualTime:
    def __init__(self):
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wakes at its time: sleepers called together wake in the order of their times."""
        wake = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


async def test_requests_are_paced_evenly_without_a_burst():
    time = VirtualTime()
    limit = RateLimit(120, None, clock=time.clock, sleep=time.sleep)
    starts = []

    async def one():
        await limit.acquire()
        starts.append(time.now)

    await asyncio.gather(*(one() for _ in range(5)))
    assert sorted(starts) == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_requests_that_wake_late_keep_their_distance():
    """The process was starved: the first request's sleep ended 2 s late, when the next ones' turns
    had passed too. They follow it at the limit's pace, not all at once."""

    class Starved(VirtualTime):
        calls = 0

        async def sleep(self, seconds: float) -> None:
            self.calls += 1
            await super().sleep(seconds + (2.0 if self.calls == 1 else 0.0))

    time = Starved()
    limit = RateLimit(120, None, clock=time.clock, sleep=time.sleep)
    starts: list[float] = []
    await limit.acquire()
    time.now = 0.1  # its successors ask while it is due at 0.5

    async def one():
        await limit.acquire()
        starts.append(time.now)

    await asyncio.gather(*(one() for _ in range(4)))
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(starts)), starts


async def test_tokens_pace_by_estimate_and_settle_by_usage():
    time = VirtualTime()
    limit = RateLimit(None, 6000, clock=time.clock, sleep=time.sleep)  # 100 tokens a second
    await limit.acquire(200)
    await limit.acquire(100)
    assert time.now == pytest.approx(2.0)  # the first's 200 tokens took 2 s of the budget
    limit.settle(100, 50)  # the server counted half
    await limit.acquire(0)
    assert time.now == pytest.approx(2.5)


async def test_a_pause_holds_back_requests_already_waiting():
    time = VirtualTime()
    limit = RateLimit(60, None, clock=time.clock, sleep=time.sleep)
    await limit.acquire()
    waiting = asyncio.ensure_future(limit.acquire())  # its turn at 1 s
    await asyncio.sleep(0)
    limit.pause(5.0)
    await waiting
    assert time.now >= 5.0


# -- pieces -----------------------------------------------------------------------------------

def test_retry_after_in_seconds_or_as_a_date():
    assert openai_scorer.retry_after("2") == 2.0
    assert openai_scorer.retry_after("0.5") == 0.5
    assert openai_scorer.retry_after(None) is None and openai_scorer.retry_after("soon") is None
    assert 0 <= openai_scorer.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1  # in the past: at once


def test_token_estimate_counts_prompt_and_completion():
    body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert 100 + 50 <= openai_scorer.estimate_tokens(body) <= 130 + 50
    assert openai_scorer.estimate_tokens({"input": "y" * 40}) == 10


def test_run_under_asyncio_gives_one_line_per_request(monkeypatch):
    with MockEndpoint() as server:
        monkeypatch.setenv("PARALLELRUN_OPENAI", json.dumps({"endpoint": server.url, "maxRetries": 1}))
        openai_scorer.init()
        frame = pd.DataFrame({"line": [request_line("a", "hello"), request_line("b", "fail 422")]})

        async def scored():
            try:
                return await openai_scorer.run(frame)
            finally:
                await openai_scorer.shutdown()

        result = asyncio.run(scored())
    assert [r["custom_id"] for r in result.rows] == ["a", "b"]
    assert result.rows[0]["error"] is None and result.rows[1]["response"]["status_code"] == 422
    assert [e.item for e in result.errors] == ["b"]


def test_a_missing_httpx_names_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if not installed
    with pytest.raises(ImportError, match=r"httpx is not installed \(needed for code: \{builtin: openai\}\); "
                                          r"pip install 'parallelrun\[openai\]'"):
        openai_scorer.init()
