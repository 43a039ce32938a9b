"""preprocess(item) in the entry script (preprocess.py), end to end with real processes.

The same work done in preprocess() (in the workers, or in 1..n preprocess processes shared
out among them) and inside run() gives byte-identical outputs, for files and for tabular
input of each format; an item whose preprocess() raises is failed with its error, the others
succeed; a preprocess process that dies loses and doubles nothing; the items handed out are
bounded by prefetchMiniBatches, counted from the order of the calls, not from memory.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from faults.conftest import alive
from rich.console import Console

from parallelrun.runner.local import run_local
from parallelrun.runner.preprocess import processes_of
from parallelrun.runner.spec import SpecError, load_spec

# One file's work: its name and a digest of its bytes (CPU work a GPU worker should not do).
FILES_WORK = """
import hashlib, os, time
from pathlib import Path

def work(path):
    data = Path(path).read_bytes()
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write(f"p {Path(path).name} {os.getpid()}\\n")
    if data.startswith(b"raise"):
        raise ValueError(f"cannot decode {Path(path).name}")
    died = Path(os.environ["CALLS_LOG"] + "." + Path(path).name + ".died")
    if data.startswith(b"hang") and not died.exists():
        died.touch()
        time.sleep(600)
    if data.startswith(b"die") and not died.exists():
        died.touch()
        os.kill(os.getpid(), 9)
    return Path(path).name, hashlib.sha256(data).hexdigest()[:16]

def log_run(mini_batch):
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write(f"r {len(mini_batch)} {os.getpid()}\\n")
"""

PREPROCESSED = FILES_WORK + """
preprocess = work

def run(mini_batch):
    log_run(mini_batch)
    return [f"{name} {digest}" for name, digest in mini_batch]
"""

IN_RUN = FILES_WORK + """
def run(mini_batch):
    log_run(mini_batch)
    out = []
    for path in mini_batch:
        try:
            name, digest = work(path)
        except ValueError:
            continue
        out.append(f"{name} {digest}")
    return out
"""

TABLE_WORK = """
import os

def work(df):
    if (df["x"] < 0).any():
        raise ValueError("a negative x")
    return df.assign(y=df["x"] * 2 + 1, label=df["name"].str.upper())

def log_run(df):
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write(f"r {len(df)} {os.getpid()}\\n")
"""

TABLE_PREPROCESSED = TABLE_WORK + """
def preprocess(df):
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write(f"p {len(df)} {os.getpid()}\\n")
    return work(df)

def run(df):
    log_run(df)
    return df
"""

TABLE_IN_RUN = TABLE_WORK + """
def run(df):
    log_run(df)
    return work(df)
"""


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def files_input(job, count: int, special: dict[int, str] | None = None) -> list[str]:
    names = [f"img_{i:04d}.bin" for i in range(count)]
    for i, name in enumerate(names):
        (job.data / name).write_bytes((special or {}).get(i, f"pixels {i}" * (i % 7 + 1)).encode())
    return names


def run_twice(job, tmp_path, calls, script_a: str, script_b: str, **spec) -> tuple[bytes, bytes, dict]:
    """The job with script_a into output/, then with script_b into output-b/ (the calls logged
    are the second run's): both final outputs, the second's summary."""
    job.script(script_a)
    quiet_run(job.write(**spec))
    first = job.final().read_bytes()
    calls.unlink()
    job.script(script_b)
    quiet_run(job.write(**{**spec, "output": {"uri": "output-b/", **spec.get("output", {})}}))
    [summary] = (tmp_path / "output-b").glob("_parallelrun/*/summary.json")
    return first, (tmp_path / "output-b" / "parallel_run_step.txt").read_bytes(), json.loads(summary.read_text())


@pytest.mark.parametrize(("processes", "workers"), [(0, 2), (1, 1), (1, 2), (3, 2), (4, 1)])
@pytest.mark.parametrize("size", [1, 7])
def test_files_preprocessed_anywhere_give_what_the_work_inside_run_gives(job, tmp_path, calls, processes, workers,
                                                                         size):
    files_input(job, 40)
    in_run, preprocessed, summary = run_twice(job, tmp_path, calls, IN_RUN, PREPROCESSED, miniBatchSize=size,
                                              processCountPerNode=workers, preprocessProcesses=processes)
    assert preprocessed == in_run and len(in_run.splitlines()) == 40
    assert summary["items"]["succeeded"] == 40 and summary["items"]["failed"] == 0
    calls_b = lines(calls)
    assert sum(1 for kind, _, _ in calls_b if kind == "p") == 40  # each item preprocessed once
    preprocess_pids = {pid for kind, _, pid in calls_b if kind == "p"}
    run_pids = {pid for kind, _, pid in calls_b if kind == "r"}
    assert sum(int(n) for kind, n, _ in calls_b if kind == "r") == 40
    if processes >= workers:  # every worker has processes of its own: no preprocess() in a worker
        assert not preprocess_pids & run_pids and 1 <= len(preprocess_pids) <= processes
    elif processes == 0:
        assert preprocess_pids <= run_pids


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("processes", [0, 2])
def test_tabular_preprocessed_gives_what_the_work_inside_run_gives(job, tmp_path, calls, fmt, processes):
    table = pa.table({"name": [f"n{i}" for i in range(500)], "x": list(range(500))})
    if fmt == "parquet":
        pq.write_table(table, job.data / "t.parquet", row_group_size=64)
    elif fmt == "csv":
        pacsv.write_csv(table, job.data / "t.csv")
    else:
        table.to_pandas().to_json(job.data / "t.jsonl", orient="records", lines=True)
    spec = {"input": {"type": "tabular", "format": fmt}, "miniBatchSize": 30, "processCountPerNode": 2,
            "preprocessProcesses": processes, "output": {"format": "csv"}}
    in_run, preprocessed, summary = run_twice(job, tmp_path, calls, TABLE_IN_RUN, TABLE_PREPROCESSED, **spec)
    assert preprocessed == in_run
    assert summary["items"]["succeeded"] == 500 and summary["items"]["failed"] == 0
    out = pd.read_csv(io.BytesIO(preprocessed))
    assert out["y"].tolist() == [2 * i + 1 for i in range(500)] and out["label"].iloc[7] == "N7"
    assert sum(int(n) for kind, n, _ in lines(calls) if kind == "p") == 500  # each row preprocessed once


@pytest.mark.parametrize("processes", [0, 2])
def test_an_item_whose_preprocess_raises_is_failed_with_its_error_and_the_others_succeed(job, tmp_path, calls,
                                                                                          processes):
    names = files_input(job, 30, {3: "raise", 4: "raise", 5: "raise", 17: "raise"})  # 3-5: a whole mini-batch
    job.script(PREPROCESSED)
    quiet_run(job.write(miniBatchSize=3, processCountPerNode=2, preprocessProcesses=processes, runMaxTry=2))
    summary = job.summary()
    assert summary["items"]["succeeded"] == 26 and summary["items"]["failed"] == 4
    assert summary["miniBatches"]["failed"] == 0  # failed items, not failed mini-batches
    [errors] = job.output.glob("_parallelrun/*/errors.jsonl")
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert sorted(Path(r["item"]).name for r in records) == [names[i] for i in (3, 4, 5, 17)]
    for r in records:
        assert r["error"] == f"ValueError: cannot decode {Path(r['item']).name}" and r["items"] == 1
        assert r["attempts"] == 1 and ", in work\n" in r["traceback"]
    output = job.final().read_text().split("\n")
    assert [line.split()[0] for line in output if line] == [n for i, n in enumerate(names) if i not in (3, 4, 5, 17)]
    run_sizes = sorted(int(n) for kind, n, _ in lines(calls) if kind == "r")
    assert 0 not in run_sizes and sum(run_sizes) == 26  # the mini-batch whose items all failed: no run() call


def test_items_failed_in_preprocess_are_scored_by_a_repair_once_fixed(job, tmp_path, calls):
    """--retry-failed reruns the mini-batches with items that failed in preprocess(); with the
    script fixed, the output is a clean run's, byte for byte."""
    names = files_input(job, 20, {6: "raise", 13: "raise"})
    job.script(PREPROCESSED)
    path = job.write(miniBatchSize=3, processCountPerNode=2, preprocessProcesses=2)
    assert quiet_run(path)["items"]["failed"] == 2
    job.script(PREPROCESSED.replace('data.startswith(b"raise")', "False"))
    calls.unlink()
    repaired = quiet_run(path, retry_failed=True)
    assert repaired["items"]["succeeded"] == 20 and repaired["items"]["failed"] == 0
    assert sorted(name for kind, name, _ in lines(calls) if kind == "p") == names[6:9] + names[12:15]
    quiet_run(job.write(miniBatchSize=3, processCountPerNode=2, preprocessProcesses=2, output={"uri": "clean/"}))
    assert job.final().read_bytes() == (tmp_path / "clean" / "parallel_run_step.txt").read_bytes()


def test_run_returning_fewer_results_than_preprocessed_items_names_the_others(job, tmp_path, calls):
    files_input(job, 6, {1: "raise"})
    job.script(FILES_WORK + "\npreprocess = work\n\ndef run(mini_batch):\n    return []\n")
    quiet_run(job.write(miniBatchSize=3, processCountPerNode=1, preprocessProcesses=1))
    [errors] = job.output.glob("_parallelrun/*/errors.jsonl")
    records = sorted((Path(r["item"]).name, r["error"]) for r in map(json.loads, errors.read_text().splitlines()))
    assert records == [("img_0000.bin", "run() returned 0 results for 2 items"),
                       ("img_0001.bin", "ValueError: cannot decode img_0001.bin"),
                       ("img_0002.bin", "run() returned 0 results for 2 items")] + [
                          (f"img_000{i}.bin", "run() returned 0 results for 3 items") for i in (3, 4, 5)]
    assert job.summary()["items"]["failed"] == 6


@pytest.mark.parametrize("processes", [0, 1])
def test_a_tabular_preprocess_that_raises_fails_the_attempt_which_is_retried(job, tmp_path, calls, processes):
    table = pa.table({"name": [f"n{i}" for i in range(100)], "x": [-1 if i == 42 else i for i in range(100)]})
    pq.write_table(table, job.data / "t.parquet")
    job.script(TABLE_PREPROCESSED)
    quiet_run(job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=20, processCountPerNode=1,
                        preprocessProcesses=processes, runMaxTry=2, output={"format": "csv"}))
    summary = job.summary()
    assert summary["items"]["succeeded"] == 80 and summary["items"]["failed"] == 20
    [errors] = job.output.glob("_parallelrun/*/errors.jsonl")
    [record] = [json.loads(line) for line in errors.read_text().splitlines()]
    assert record["source"]["rows"] == [40, 60] and record["attempts"] == 2
    assert record["error"] == "PreprocessError: ValueError: a negative x"
    assert 'raise ValueError("a negative x")' in record["traceback"]  # preprocess()'s own, wherever it ran
    assert sum(1 for kind, n, _ in lines(calls) if kind == "p") == 5 + 1  # the failing one twice


def test_a_killed_preprocess_process_loses_and_doubles_nothing(job, tmp_path, calls):
    """A preprocess process killed by SIGKILL (as the OOM killer does) in the middle of a run:
    its worker is replaced, the mini-batch it prepared is tried again, and the output is the
    clean run's, byte for byte."""
    names = files_input(job, 60, {25: "die"})
    job.script(PREPROCESSED)
    spec = {"miniBatchSize": 4, "processCountPerNode": 2, "preprocessProcesses": 4}
    quiet_run(job.write(**spec))
    summary = job.summary()
    assert summary["miniBatches"]["succeeded"] == 15 and summary["items"]["failed"] == 0
    assert summary["items"]["succeeded"] == 60
    assert Path(f"{calls}.{names[25]}.died").exists()  # it was killed once
    died = job.final().read_bytes()
    quiet_run(job.write(**spec, output={"uri": "clean/"}))
    assert died == (tmp_path / "clean" / "parallel_run_step.txt").read_bytes()
    logs = "".join(p.read_text() for p in job.output.glob("_parallelrun/*/logs/*.log"))
    assert "preprocess process" in logs and "was killed by SIGKILL" in logs


def test_a_preprocess_process_that_dies_each_time_fails_its_mini_batch_with_a_clear_error(job, tmp_path, calls):
    files_input(job, 12, {5: "die"})
    job.script(PREPROCESSED.replace("and not died.exists()", ""))
    quiet_run(job.write(miniBatchSize=3, processCountPerNode=1, preprocessProcesses=2, runMaxTry=2))
    summary = job.summary()
    assert summary["items"] == {**summary["items"], "succeeded": 9, "failed": 3}
    [errors] = job.output.glob("_parallelrun/*/errors.jsonl")
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert {r["miniBatch"] for r in records} == {1} and len(records) == 3
    assert all(r["error"].startswith("a preprocess process of the worker died") for r in records)


def test_a_hanging_preprocess_is_ended_by_the_run_timeout_with_its_worker(job, tmp_path, calls):
    names = files_input(job, 24, {9: "hang"})
    job.script(PREPROCESSED)
    quiet_run(job.write(miniBatchSize=4, processCountPerNode=1, preprocessProcesses=2, runInvocationTimeout=2))
    summary = job.summary()
    assert summary["items"]["succeeded"] == 24 and summary["items"]["failed"] == 0
    assert [line.split()[0] for line in job.final().read_text().splitlines()] == names
    pids = {int(pid) for kind, _, pid in lines(calls) if kind == "p"}
    assert len(pids) > 2 and not any(alive(pid) for pid in pids)  # the replaced worker's too


def test_a_result_that_cannot_cross_to_the_worker_fails_its_item_naming_why(job, tmp_path, calls):
    files_input(job, 4)
    job.script(FILES_WORK + "\ndef preprocess(path):\n    return lambda: path\n\n"
                            "def run(mini_batch):\n    return [str(callable(f)) for f in mini_batch]\n")
    quiet_run(job.write(miniBatchSize=2, processCountPerNode=1, preprocessProcesses=1))
    [errors] = job.output.glob("_parallelrun/*/errors.jsonl")
    records = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(records) == 4 and all("pickle" in r["error"] for r in records)


def test_items_are_handed_out_at_most_prefetch_mini_batches_ahead_of_run(job, tmp_path, calls):
    """Counted from the order of the calls: when preprocess() starts an item of mini-batch m,
    the mini-batches before m - prefetch have ended run() (the results held stay bounded),
    although the worker holds many more (quick ones first: the pool sends it more at a time);
    and it does start ahead (run() never waits for the next mini-batch's preprocessing alone)."""
    files_input(job, 240)
    job.script(PREPROCESSED.replace("    log_run(mini_batch)\n", "    log_run(mini_batch)\n"
                                    "    if mini_batch[0][0] >= 'img_0080':\n"
                                    "        import time; time.sleep(0.03)\n"
                                    "    with open(os.environ['CALLS_LOG'], 'a') as f:\n"
                                    "        f.write('e 0 0\\n')\n"))
    prefetch = 2
    quiet_run(job.write(miniBatchSize=4, processCountPerNode=1, preprocessProcesses=3,
                        prefetchMiniBatches=prefetch))
    ended, furthest_ahead = 0, 0
    for kind, name, _ in lines(calls):
        if kind == "e":
            ended += 1
        elif kind == "p":
            mini_batch = int(name[4:8]) // 4
            assert mini_batch <= ended + prefetch, f"{name} preprocessed with {ended} mini-batches ended"
            furthest_ahead = max(furthest_ahead, mini_batch - ended)
    assert ended == 60 and furthest_ahead == prefetch


def test_preprocess_processes_are_shared_out_among_the_workers():
    assert [processes_of(5, 2, k) for k in range(2)] == [3, 2]
    assert [processes_of(2, 4, k) for k in range(4)] == [1, 1, 0, 0]
    assert [processes_of(0, 3, k) for k in range(3)] == [0, 0, 0]
    assert sum(processes_of(37, 8, k) for k in range(8)) == 37


BASE = {"input": {"uri": "/in/", "type": "files"}, "code": {"entryScript": "s.py"}, "output": {"uri": "/out/"}}


def test_spec_preprocess_processes():
    assert load_spec({"spec": BASE}).preprocess_processes == 0
    assert "preprocessProcesses" not in load_spec({"spec": BASE}).to_dict()  # run ids of other specs unchanged
    assert load_spec({"spec": {**BASE, "preprocessProcesses": 6}}).to_dict()["preprocessProcesses"] == 6
    for bad, message in [(-1, "-1 is below the minimum 0"), ("4", "expected an integer >= 0, got '4'"),
                         (True, "expected an integer >= 0, got True"), (1.5, "expected an integer >= 0")]:
        with pytest.raises(SpecError, match=rf"spec.preprocessProcesses: {message}"):
            load_spec({"spec": {**BASE, "preprocessProcesses": bad}})


ASYNC_PREPROCESSED = FILES_WORK + """
import asyncio

preprocess = work

async def run(mini_batch):
    await asyncio.sleep(0.01)
    log_run(mini_batch)
    return [f"{name} {digest}" for name, digest in mini_batch]
"""


@pytest.mark.parametrize("processes", [0, 2])
def test_an_async_run_with_many_in_flight_gets_preprocessed_items(job, tmp_path, calls, processes):
    """preprocess() with `async def run` and miniBatchesInFlight: the results are awaited off the
    event loop, each item once, the output as the work inside a synchronous run() gives it; an
    item whose preprocess() raises is failed alone."""
    files_input(job, 40, {5: "raise"})
    job.script(IN_RUN)
    quiet_run(job.write(miniBatchSize=3, processCountPerNode=2))
    in_run = job.final().read_bytes()
    calls.unlink()
    job.script(ASYNC_PREPROCESSED)
    quiet_run(job.write(miniBatchSize=3, processCountPerNode=2, preprocessProcesses=processes, miniBatchesInFlight=4,
                        output={"uri": "output-b/"}))
    preprocessed = (tmp_path / "output-b" / "parallel_run_step.txt").read_bytes()
    [path] = (tmp_path / "output-b").glob("_parallelrun/*/summary.json")
    summary = json.loads(path.read_text())
    assert preprocessed == in_run and len(in_run.splitlines()) == 39
    assert summary["items"] == {"succeeded": 39, "failed": 1}
    assert sum(1 for kind, _, _ in lines(calls) if kind == "p") == 40
