"""`async def run(mini_batch)` with spec.miniBatchesInFlight: many calls in flight on each
worker's event loop, each with its own timeout, retries and accounting; the output as a
synchronous run's, in plan order; nothing lost or doubled when a call hangs, raises or its
worker dies with every call in flight."""

import io
import json
import textwrap

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner import pool
from parallelrun.runner.local import LocalRunError, run_local
from parallelrun.runner.spec import SpecError, load_spec, load_spec_file


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def errors_of(summary) -> list[dict]:
    with open(summary["errors"]) as f:
        return [json.loads(line) for line in f]


# Per file, the action its content names: "ok", "raise", "hang" (awaits forever, logs its
# cancellation), "stubborn" (ignores its cancellation), "block" (a synchronous sleep: the loop
# stops), "kill" (the first time: SIGKILL to its worker once KILL_AT calls are in flight;
# the calls beside it wait for that). Each call logs "<event> <file> <pid>" to CALLS_LOG, and
# each worker's async shutdown() "shutdown shutdown <pid>".
SCRIPT = """
import asyncio, os, signal, time
from pathlib import Path

KILL_AT = 16
in_flight = 0

async def init():
    global calls, engine
    await asyncio.sleep(0)
    calls = Path(os.environ["CALLS_LOG"])
    engine = asyncio.Queue()  # bound to the loop init() ran on: run() must share it

async def shutdown():  # run on the same loop, once the calls are over (a worker killed at close runs none)
    await engine.put("shutdown")
    log("shutdown", await engine.get())

def log(event, name):
    with calls.open("a") as f:
        f.write(f"{event} {name} {os.getpid()}\\n")

async def run(mini_batch):
    global in_flight
    out = []
    for path in mini_batch:
        name = Path(path).name
        action = Path(path).read_text().strip()
        killed = Path(os.environ["CALLS_LOG"] + ".killed")
        log("start", name)
        in_flight += 1
        try:
            await engine.put(name)
            await engine.get()
            if action == "raise":
                raise ValueError(f"bad item {name}")
            if action == "hang":
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    log("cancelled", name)
                    raise
            if action == "stubborn":
                while True:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        log("cancelled", name)
            if action == "block":
                time.sleep(600)
            if action == "kill" and not killed.exists():
                while in_flight < KILL_AT:
                    await asyncio.sleep(0.005)
                killed.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            while "kill" in os.environ.get("ACTIONS", "") and not killed.exists():
                await asyncio.sleep(0.005)  # in flight beside the call that kills the worker
        finally:
            in_flight -= 1
        log("done", name)
        out.append(name)
    return out
"""


@pytest.fixture
def scripted(job, calls):
    job.script(SCRIPT)

    def make(actions: list[str], **spec):
        job.actions(actions)
        return job.write(**{"miniBatchSize": 1, "processCountPerNode": 1, **spec})

    def events(kind: str, name: str | None = None) -> list[tuple[str, int]]:
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [(n, int(pid)) for e, n, pid in (line.split() for line in lines)
                if e == kind and (name is None or n == name)]

    make.events = events
    return make


def test_a_hung_call_is_cancelled_at_its_timeout_while_the_others_complete(scripted, job):
    actions = ["ok", "hang", *["ok"] * 10]
    summary = quiet_run(scripted(actions, miniBatchesInFlight=4, runInvocationTimeout=1, runMaxTry=2))
    assert summary["items"] == {"succeeded": 11, "failed": 1}
    [error] = errors_of(summary)
    assert error["item"].endswith("item_001.txt") and error["attempts"] == 2
    assert "runInvocationTimeout (1 s); the call was cancelled" in error["error"]
    assert len(scripted.events("cancelled", "item_001.txt")) == 2  # cancelled, not left running
    assert len(scripted.events("start", "item_001.txt")) == 2
    # The others ended while it hung, on the same worker: one process ran every call.
    lines = (job.root / "calls.log").read_text().splitlines()
    first_cancel = lines.index(next(line for line in lines if line.startswith("cancelled")))
    assert {n for n, _ in scripted.events("done")} == {f"item_{i:03d}.txt" for i in range(12) if i != 1}
    assert all(lines.index(line) < first_cancel for line in lines if line.startswith("done"))
    [worker] = {pid for _, pid in scripted.events("start")}
    assert [pid for _, pid in scripted.events("shutdown")] == [worker]  # it ended as told, not killed
    assert job.final().read_text().split() == [f"item_{i:03d}.txt" for i in range(12) if i != 1]


def test_a_call_that_ignores_its_cancellation_is_left_behind(scripted, job):
    summary = quiet_run(scripted(["ok", "stubborn", "ok", "ok"], miniBatchesInFlight=4, runInvocationTimeout=1,
                                 runMaxTry=2))
    assert summary["items"] == {"succeeded": 3, "failed": 1}
    [error] = errors_of(summary)
    assert "the call was cancelled" in error["error"] and error["attempts"] == 2
    assert len(scripted.events("cancelled", "item_001.txt")) == 2
    [worker] = {pid for _, pid in scripted.events("start")}  # its worker went on
    assert [pid for _, pid in scripted.events("shutdown")] == [worker]  # the call left behind held nothing up
    assert job.final().read_text().split() == ["item_000.txt", "item_002.txt", "item_003.txt"]


def test_a_call_that_blocks_the_loop_has_its_worker_killed(scripted, job, monkeypatch):
    """A synchronous call inside async run() stops the loop and every call on it: the pool kills
    the worker (after the grace it leaves the worker's own cancel); the calls it had in flight
    run again alone, where the blocking one fails its attempt, and the error says why."""
    monkeypatch.setattr(pool, "CANCEL_GRACE", 0.5)
    summary = quiet_run(scripted(["ok", "block", "ok", "ok"], miniBatchesInFlight=4, runInvocationTimeout=1,
                                 runMaxTry=1))
    assert summary["items"] == {"succeeded": 3, "failed": 1}
    [error] = errors_of(summary)
    assert error["item"].endswith("item_001.txt") and error["attempts"] == 1
    assert "event loop was blocked" in error["error"]
    assert job.final().read_text().split() == ["item_000.txt", "item_002.txt", "item_003.txt"]


def test_an_exception_in_one_call_fails_only_its_mini_batch(scripted, job):
    summary = quiet_run(scripted(["ok", "raise", *["ok"] * 6], miniBatchesInFlight=8, runMaxTry=3))
    assert summary["items"] == {"succeeded": 7, "failed": 1}
    assert summary["miniBatches"] == {"succeeded": 7, "failed": 1, "total": 8}
    [error] = errors_of(summary)
    assert error["attempts"] == 3 and "ValueError: bad item item_001.txt" in error["error"]
    assert "Traceback" in error["traceback"]
    assert len(scripted.events("start", "item_001.txt")) == 3
    [worker] = {pid for _, pid in scripted.events("start")}
    assert [pid for _, pid in scripted.events("shutdown")] == [worker]
    assert job.final().read_text().split() == [f"item_{i:03d}.txt" for i in range(8) if i != 1]


def test_a_worker_killed_with_16_calls_in_flight_loses_and_doubles_nothing(scripted, job, monkeypatch):
    """Which of the 16 calls in flight killed the worker is not known: each runs again alone,
    no attempt spent (runMaxTry 1), as do those it held unstarted. The output has each item once."""
    actions = ["ok"] * 5 + ["kill"] + ["ok"] * 34
    monkeypatch.setenv("ACTIONS", "kill")
    summary = quiet_run(scripted(actions, miniBatchesInFlight=16, runMaxTry=1))
    planned = len(actions)
    assert summary["items"] == {"succeeded": planned, "failed": 0}
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] == planned
    names = [f"item_{i:03d}.txt" for i in range(planned)]
    assert job.final().read_text().split() == names  # each once, in plan order
    first, *later = dict.fromkeys(pid for _, pid in scripted.events("start"))
    assert later  # the worker was replaced
    in_the_dead_worker = [n for n, pid in scripted.events("start") if pid == first]
    assert len(in_the_dead_worker) == 16
    assert sorted(n for n, _ in scripted.events("done")) == names  # those in flight ended once, after the kill


def test_a_call_that_crashes_its_worker_each_time_fails_alone(job, calls):
    """A call that crashes its worker whenever it runs, with 8 in flight: it is found by running
    the calls that were in flight alone, and only it fails, its attempts spent; none is doubled."""
    job.actions(["ok"] * 3 + ["segv"] + ["ok"] * 12)
    job.script(textwrap.dedent("""
        import asyncio, ctypes, os
        from pathlib import Path

        async def run(mini_batch):
            for path in mini_batch:
                with open(os.environ["CALLS_LOG"], "a") as f:
                    f.write(Path(path).name + "\\n")
                await asyncio.sleep(0.05)
                if Path(path).read_text() == "segv":
                    ctypes.string_at(0)
            return [Path(p).name for p in mini_batch]
    """))
    summary = quiet_run(job.write(miniBatchSize=1, processCountPerNode=1, miniBatchesInFlight=8, runMaxTry=2))
    assert summary["items"] == {"succeeded": 15, "failed": 1}
    [error] = errors_of(summary)
    assert error["item"].endswith("item_003.txt") and error["attempts"] == 2
    assert "killed by SIGSEGV" in error["error"]
    assert job.final().read_text().split() == [f"item_{i:03d}.txt" for i in range(16) if i != 3]
    ran = calls.read_text().split()
    assert ran.count("item_003.txt") == 3  # beside others once, then alone twice


# The same scoring in two forms; each call's latency depends on its mini-batch, so the async
# calls end out of plan order.
SYNC_AND_ASYNC = """
import asyncio, time
import pandas as pd
from pathlib import Path

def delay(index):
    return (index * 7 % 5) * 0.004

def score(mini_batch):
    if isinstance(mini_batch, pd.DataFrame):
        return mini_batch.assign(score=mini_batch["x"] * 2 + 1)
    return [f"{Path(p).name} {Path(p).read_text().strip()}" for p in mini_batch]

{run}
"""
SYNC_RUN = "def run(mini_batch, context):\n    time.sleep(delay(context.minibatch_index))\n    return score(mini_batch)"
ASYNC_RUN = ("async def run(mini_batch, context):\n    await asyncio.sleep(delay(context.minibatch_index))\n"
             "    return score(mini_batch)")


def _write_table(job, fmt: str) -> None:
    for f in range(3):
        table = pa.table({"id": [f"{f}-{i}" for i in range(40)], "x": list(range(f * 40, f * 40 + 40))})
        if fmt == "parquet":
            pq.write_table(table, job.data / f"part-{f}.parquet", row_group_size=7)
        elif fmt == "csv":
            pacsv.write_csv(table, job.data / f"part-{f}.csv")
        else:
            (job.data / f"part-{f}.jsonl").write_text(
                "".join(json.dumps(row) + "\n" for row in table.to_pylist()))


@pytest.mark.parametrize("input_format,output_format", [
    (None, "txt"), ("parquet", "csv"), ("csv", "parquet"), ("jsonl", "jsonl")])
def test_async_output_is_byte_identical_to_the_sync_run(job, tmp_path, input_format, output_format):
    if input_format is None:
        for i in range(60):
            (job.data / f"item_{i:03d}.txt").write_text(f"{i}\n")
        spec = {"input": {"type": "files"}, "miniBatchSize": 2}
    else:
        _write_table(job, input_format)
        spec = {"input": {"type": "tabular", "format": input_format}, "miniBatchSize": 6}
    outputs = {}
    for name, run in (("sync", SYNC_RUN), ("async", ASYNC_RUN)):
        job.script(SYNC_AND_ASYNC.replace("{run}", run))
        in_flight = {"miniBatchesInFlight": 8} if name == "async" else {}
        summary = quiet_run(job.write(**spec, **in_flight, nodeCount=2, processCountPerNode=2,
                                      output={"uri": f"out-{name}/", "format": output_format}))
        assert summary["items"]["failed"] == 0
        [final] = (tmp_path / f"out-{name}").glob("parallel_run_step.*")
        outputs[name] = final.read_bytes()
    assert outputs["async"] == outputs["sync"]
    assert len(outputs["sync"]) > 100


def test_side_outputs_go_to_each_calls_own_folder_once(job):
    """Calls in flight together share the environment, so each attempt's folder is its context's
    output_dir; every side output is published once, under its mini-batch's commit."""
    for i in range(24):
        (job.data / f"item_{i:03d}.txt").write_text("flaky" if i % 5 == 0 else "ok")
    job.script(textwrap.dedent("""
        import asyncio, os
        from pathlib import Path

        async def run(mini_batch, context):
            assert "PARALLELRUN_OUTPUT_DIR" not in os.environ
            out = Path(context.output_dir)
            for path in mini_batch:
                name = Path(path).name
                (out / name).write_text(str(context.minibatch_index))
                await asyncio.sleep(0.01 * (context.minibatch_index % 3))
                marker = Path(path + ".seen")
                if Path(path).read_text() == "flaky" and not marker.exists():
                    marker.touch()
                    raise RuntimeError("fails after writing its side output")
            return [Path(p).name for p in mini_batch]
    """))
    summary = quiet_run(job.write(miniBatchSize=1, miniBatchesInFlight=8, runMaxTry=2))
    assert summary["items"] == {"succeeded": 24, "failed": 0}
    published = sorted(p.name for p in job.output.glob("item_*.txt"))
    assert published == [f"item_{i:03d}.txt" for i in range(24)]
    assert all((job.output / f"item_{i:03d}.txt").read_text() == str(i) for i in range(24))


def test_in_flight_with_a_synchronous_run_is_refused(job):
    job.files(3)
    job.script("def run(mini_batch):\n    return mini_batch\n")
    with pytest.raises(LocalRunError, match=r"spec.miniBatchesInFlight is 4 but run\(\) in score.py is "
                                            r"synchronous: make it `async def run\(mini_batch\)` or set "
                                            r"spec.miniBatchesInFlight to 1") as e:
        quiet_run(job.write(miniBatchesInFlight=4))
    assert e.value.exit_code == 2


def test_an_async_run_with_one_in_flight_keeps_the_side_output_variables(job):
    job.files(4)
    job.script(textwrap.dedent("""
        import os
        from pathlib import Path

        async def run(mini_batch, context):
            assert os.environ["PARALLELRUN_OUTPUT_DIR"] == context.output_dir
            for path in mini_batch:
                Path(context.output_dir, Path(path).name + ".side").write_text("x")
            return list(mini_batch)
    """))
    summary = quiet_run(job.write(miniBatchSize=1))
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    assert len(list(job.output.glob("*.side"))) == 4


@pytest.mark.parametrize("value,message", [
    (0, "spec.miniBatchesInFlight: 0 is below the minimum 1"),
    ("16", "spec.miniBatchesInFlight: expected an integer >= 1, got '16'"),
    (True, "spec.miniBatchesInFlight: expected an integer >= 1, got True"),
    (5000, "spec.miniBatchesInFlight: 5000 is above the maximum 1024"),
])
def test_mini_batches_in_flight_is_validated(job, value, message):
    with pytest.raises(SpecError) as e:
        load_spec_file(str(job.write(miniBatchesInFlight=value)))
    assert message in str(e.value)


def test_mini_batches_in_flight_enters_the_spec_only_where_set(job):
    assert "miniBatchesInFlight" not in load_spec_file(str(job.write())).to_dict()
    spec = load_spec_file(str(job.write(miniBatchesInFlight=16)))
    assert spec.mini_batches_in_flight == 16 and spec.to_dict()["miniBatchesInFlight"] == 16
    assert load_spec({"spec": spec.to_dict()}).mini_batches_in_flight == 16  # as the operator hands it to pods
