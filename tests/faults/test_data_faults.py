"""Faults in the data and the work folder: nothing lost, nothing doubled, nothing stale.

Each test asserts succeeded + failed == planned, and the exact outcome.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.local import LocalRunError, run_local
from parallelrun.runner.planning import InputChanged, MiniBatch
from parallelrun.runner.records import LockHolder

ECHO = """
def run(df):
    return df
"""

SLOW_ECHO = """
import time

def run(df):
    time.sleep(0.3)
    return df
"""


def quiet_run(path, **kwargs):
    return run_local(str(path), console=Console(file=io.StringIO()), **kwargs)


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def write_csv(path, rows: range, extra: str = "") -> None:
    path.write_text("id,x\n" + "".join(f"{i},{i * 0.5}{extra}\n" for i in rows))


def assert_accounted(summary: dict) -> None:
    assert summary["items"]["succeeded"] + summary["items"]["failed"] == summary["plan"]["items"]
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] == summary["plan"]["miniBatches"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_tabular_text_input_by_size_runs(job, fmt):
    """Item 1: the tabular default (miniBatchSize by size) leaves `items` out of the plan; pods read it back."""
    for k in range(2):
        if fmt == "csv":
            write_csv(job.data / f"part{k}.csv", range(k * 500, k * 500 + 500))
        else:
            (job.data / f"part{k}.jsonl").write_text("".join(json.dumps({"id": i}) + "\n"
                                                             for i in range(k * 500, k * 500 + 500)))
    job.script(ECHO)
    summary = quiet_run(job.write(input={"type": "tabular", "format": fmt}, miniBatchSize="2KB",
                                  output={"format": "csv"}))
    assert summary["items"] == {"succeeded": 1000, "failed": 0}
    assert pd.read_csv(job.final())["id"].tolist() == list(range(1000))


def test_a_mini_batch_without_items_round_trips():
    mb = MiniBatch(id=3, size=10, items=None, file="a.csv", bytes=(0, 10), stamps=(10, "1"))
    assert MiniBatch.from_json(mb.to_json()) == mb


def test_resume_refuses_input_rewritten_since_the_plan(job):
    """Item 3: an interrupted run whose input was rewritten must not resume against the old plan."""
    for k in range(4):
        write_csv(job.data / f"part{k}.csv", range(k * 100, k * 100 + 100))
    job.script(ECHO)
    path = job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=50, output={"format": "csv"},
                     errorThreshold=0)
    quiet_run(path)
    [root] = job.output.glob("_parallelrun/*/")
    (root / "summary.json").unlink()  # as if interrupted before the merge: a rerun resumes
    write_csv(job.data / "part2.csv", range(7000, 7080))  # rewritten, fewer rows
    (job.data / "part9.csv").write_text("id,x\n1,1\n")  # and a new file
    with pytest.raises(InputChanged) as e:
        quiet_run(path)
    message = str(e.value)
    assert "1 changed: part2.csv (size" in message and "1 added: part9.csv" in message and "--fresh" in message
    fresh = quiet_run(path, fresh=True)
    assert fresh["items"] == {"succeeded": 381, "failed": 0}
    assert_accounted(fresh)


def test_resume_refuses_a_changed_model(job):
    job.files(4)
    (job.root / "model").mkdir()
    (job.root / "model" / "weights.txt").write_text("v1")
    job.script("def run(paths):\n    return paths\n")
    path = job.write(model={"uri": "model/"})
    quiet_run(path)
    [summary] = job.output.glob("_parallelrun/*/summary.json")
    summary.unlink()
    (job.root / "model" / "weights.txt").write_text("v2 is longer")
    with pytest.raises(InputChanged, match="the model at .* changed"):
        quiet_run(path)


def test_cli_says_the_input_changed_and_exits_2(job):
    job.files(6)
    job.script("def run(paths):\n    return paths\n")
    path = job.write(miniBatchSize=2)
    assert cli("run", str(path)).returncode == 0
    [summary] = job.output.glob("_parallelrun/*/summary.json")
    summary.unlink()
    (job.data / "item_0003.txt").write_text("rewritten, longer\n")
    result = cli("run", str(path))
    assert result.returncode == 2
    assert "item_0003.txt" in result.stderr and "--fresh" in result.stderr and "Traceback" not in result.stderr


def test_rows_that_vanished_after_planning_are_failed_items(job, monkeypatch):
    """Item 7: a file truncated between planning and scoring: its planned rows are failed items."""
    write_csv(job.data / "a.csv", range(1000))
    job.script(ECHO)
    from parallelrun.runner.planning import making

    make_plan = making.make_plan

    def truncating(spec, env=None):
        made = make_plan(spec, env)
        write_csv(job.data / "a.csv", range(950))  # shorter once planned
        return made

    monkeypatch.setattr(making, "make_plan", truncating)
    summary = quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=100,
                                  output={"format": "csv"}, runMaxTry=1))
    assert summary["plan"]["items"] == 1000
    assert summary["items"] == {"succeeded": 0, "failed": 1000}  # the file changed: none of it is trusted
    errors = [json.loads(line) for line in open(os.path.join(job.output, "_parallelrun", summary["runId"],
                                                             "errors.jsonl"))]
    assert errors and all("changed since planning" in e["error"] or "were planned" in e["error"] for e in errors)
    assert sum(e["items"] for e in errors) == summary["items"]["failed"]


def part_file(root: Path, mini_batch: int) -> Path:
    """The file that holds a committed mini-batch's part (with its group's other parts)."""
    records = [json.loads(line) for path in root.glob("commits/*/*.jsonl") for line in path.read_text().splitlines()]
    return root / "parts" / next(r["part"][0] for r in records if r["id"] == mini_batch)


def test_the_merge_fails_loudly_when_a_committed_part_is_missing(job, monkeypatch):
    """Item 4: the merge walks the plan; a part deleted before it does not give a short output."""
    write_csv(job.data / "a.csv", range(300))
    job.script(ECHO)
    path = job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=100, output={"format": "csv"})
    from parallelrun.runner import local

    merge = local.merge

    def losing_a_part(spec, plan, fs, layout, write_final=True):
        os.remove(part_file(Path(layout.root), 1))
        return merge(spec, plan, fs, layout, write_final)

    monkeypatch.setattr(local, "merge", losing_a_part)
    with pytest.raises(LocalRunError, match=r"mini-batch [01] was committed with results, but its part .* is missing"):
        quiet_run(path)
    assert not job.final().exists()


def _columns_script(job, body: str) -> None:
    job.script("import pandas as pd\n\ndef run(df):\n" + body)


@pytest.mark.parametrize("fmt", ["csv", "txt", "jsonl", "parquet"])
def test_columns_are_aligned_by_name_across_mini_batches(job, fmt):
    """Item 5: other orders and missing or extra columns land under their own names."""
    write_csv(job.data / "a.csv", range(6))
    _columns_script(job, """
    first = int(df["id"].iloc[0])
    out = pd.DataFrame({"id": df["id"], "double": df["x"] * 2})
    if first == 2:
        out = out[["double", "id"]]  # another order
    if first == 4:
        out = out[["id"]].assign(extra=["e"] * len(out))  # no double, an extra column
    return out
""")
    summary = quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2,
                                  processCountPerNode=2, output={"format": fmt, "fileName": f"out.{fmt}"}))
    assert_accounted(summary)
    out = job.final(f"out.{fmt}")
    if fmt == "csv":
        frame = pd.read_csv(out)
    elif fmt == "parquet":
        frame = pq.read_table(out).to_pandas()
    elif fmt == "jsonl":
        frame = pd.read_json(out, lines=True)
    else:
        rows = [line.split(" ") for line in out.read_text().splitlines()]
        assert rows == [["0", "0", ""], ["1", "1", ""], ["2", "2", ""], ["3", "3", ""],
                        ["4", "", "e"], ["5", "", "e"]]
        return
    assert frame["id"].tolist() == list(range(6))
    assert frame["double"].tolist()[:4] == [0.0, 1.0, 2.0, 3.0] and frame["double"].isna().tolist()[4:] == [True] * 2
    assert frame["extra"].isna().tolist()[:4] == [True] * 4 and frame["extra"].tolist()[4:] == ["e", "e"]
    if fmt != "jsonl":
        assert list(frame.columns) == ["id", "double", "extra"]


RETYPED = """
    out = pd.DataFrame({"id": df["id"]})
    out["label"] = "text" if int(df["id"].iloc[0]) == 0 else 7
    return out
"""


def test_a_retyped_column_fails_a_parquet_run_naming_column_and_mini_batches(job):
    write_csv(job.data / "a.csv", range(4))
    _columns_script(job, RETYPED)
    with pytest.raises(LocalRunError, match=r"column 'label' is (large_)?string in mini-batch 0 but int64 in mini-batch 1"):
        quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2,
                            output={"format": "parquet", "fileName": "out.parquet"}))
    assert not job.final("out.parquet").exists()


@pytest.mark.parametrize("fmt", ["csv", "txt"])
def test_text_output_keeps_values_as_run_wrote_them(job, fmt):
    """Types do not matter in text: a column of text in one mini-batch and numbers (or an all-NaN
    float column) in another is written as it came; values such as NA or null stay as they are."""
    write_csv(job.data / "a.csv", range(6))
    _columns_script(job, """
    first = int(df["id"].iloc[0])
    out = pd.DataFrame({"id": df["id"]})
    out["label"] = {0: "NA", 2: 7, 4: float("nan")}[first]
    return out if first != 2 else out[["label", "id"]]
""")
    quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2,
                        output={"format": fmt, "fileName": f"out.{fmt}"}))
    lines = job.final(f"out.{fmt}").read_text().splitlines()
    sep = "," if fmt == "csv" else " "
    expected = [f"0{sep}NA", f"1{sep}NA", f"2{sep}7", f"3{sep}7", f"4{sep}", f"5{sep}"]
    assert lines == ([f"id{sep}label"] if fmt == "csv" else []) + expected


def test_ints_and_floats_of_one_column_unify(job):
    write_csv(job.data / "a.csv", range(4))
    _columns_script(job, """
    out = pd.DataFrame({"id": df["id"]})
    out["v"] = 1 if int(df["id"].iloc[0]) == 0 else 1.5
    return out
""")
    quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=2,
                        output={"format": "parquet", "fileName": "out.parquet"}))
    table = pq.read_table(job.final("out.parquet"))
    assert table.schema.field("v").type == pa.float64() and table.column("v").to_pylist() == [1, 1, 1.5, 1.5]


def test_two_runs_of_one_job_at_once(job):
    """Item 6: the second run is refused with the holder's name; the first is not disturbed."""
    write_csv(job.data / "a.csv", range(200))
    job.script(SLOW_ECHO)
    path = job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=10, output={"format": "csv"},
                     processCountPerNode=1)
    first = subprocess.Popen([sys.executable, "-m", "parallelrun.cli", "run", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while not list(job.output.glob("_parallelrun/*/plan/plan.json")):
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.poll() else ""
            time.sleep(0.1)
        second = cli("run", str(path))
        assert second.returncode == 2
        assert "is already running (pid " in second.stderr and f"pid {first.pid}" in second.stderr
        third = cli("run", str(path), "--fresh")  # --fresh must not wipe the folder under the first
        assert third.returncode == 2
        assert first.wait(120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert pd.read_csv(job.final())["id"].tolist() == list(range(200))
    assert job.summary()["items"] == {"succeeded": 200, "failed": 0}


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_inside_the_input_is_never_read_as_input(job, where):
    """Item 8: a rerun does not score its own output."""
    write_csv(job.data / "a.csv", range(10))
    job.script(ECHO)
    output = "data/" if where == "same" else "data/results/"
    path = job.write(input={"type": "tabular", "format": "csv", "pattern": "*.csv"}, miniBatchSize=5,
                     output={"uri": output, "format": "csv", "fileName": "scored.csv"})
    for _ in range(2):
        summary = quiet_run(path, fresh=True)
        assert summary["items"] == {"succeeded": 10, "failed": 0}
    frame = pd.read_csv(job.root / output / "scored.csv")
    assert frame["id"].tolist() == list(range(10))


def test_run_returning_more_results_than_items_is_a_failed_attempt(job):
    """Item 9: a mismatch is not kept silently."""
    write_csv(job.data / "a.csv", range(10))
    job.script("""
def run(df):
    return list(range(len(df) + 4))
""")
    with pytest.raises(LocalRunError):
        quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=10, runMaxTry=2,
                            errorThreshold=0))
    summary = job.summary()
    assert summary["items"] == {"succeeded": 0, "failed": 10}
    [error] = [json.loads(line) for line in open(os.path.join(job.output, "_parallelrun", summary["runId"],
                                                              "errors.jsonl"))]
    assert "returned 14 results for 10 items" in error["error"] and error["attempts"] == 2


def test_a_failed_run_leaves_no_stale_output_looking_current(job):
    """Item 16: the previous run's final file is moved aside; the summary says where; no `not run` is hidden."""
    write_csv(job.data / "a.csv", range(20))
    job.script(ECHO)
    quiet_run(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=5, output={"format": "csv"}))
    old = job.final().read_text()
    job.script("def run(df):\n    raise ValueError('broken model')\n")
    result = cli("run", str(job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=5,
                                      output={"format": "csv"}, errorThreshold=0, runMaxTry=1)))
    assert result.returncode == 1
    assert not job.final().exists()
    assert (job.output / "parallel_run_step.txt.previous").read_text() == old
    assert "not run" in result.stderr and "summary:" in result.stderr and "moved to" in result.stderr


def test_parts_are_removed_once_published_and_a_merged_run_merges_again_as_is(job):
    job.files(6)
    job.script("def run(paths):\n    return paths\n")
    summary = quiet_run(job.write(miniBatchSize=2))
    root = job.output / "_parallelrun" / summary["runId"]
    assert not (root / "parts").exists() and not (root / "done").exists()
    assert (root / "summary.json").exists() and (root / "plan" / "plan.json").exists()


def test_progress_without_a_terminal_prints_lines(job):
    job.files(4)
    job.script("import time\n\ndef run(paths):\n    time.sleep(1.5)\n    return paths\n")
    result = cli("run", str(job.write(processCountPerNode=1)))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Scoring: ")]
    assert len(lines) >= 2 and "4/4 mini-batches" in lines[-1]


def pod(command: str, spec, run_id: str, log, extra=()) -> subprocess.CompletedProcess:
    """What a scoring or merge pod runs, with its termination log in a file."""
    return subprocess.run([sys.executable, "-m", "parallelrun.runner", command, "--spec", str(spec), "--run-id", run_id,
                           *extra], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PARALLELRUN_TERMINATION_LOG": str(log)})


def test_a_scoring_pod_refuses_a_model_changed_since_the_plan(job, tmp_path):
    job.files(4)
    (job.root / "model").mkdir()
    (job.root / "model" / "weights.txt").write_text("v1")
    job.script("def run(paths):\n    return paths\n")
    spec, log = job.write(model={"uri": "model/"}), tmp_path / "termination-log"
    assert pod("plan", spec, "r1", log).returncode == 0
    (job.root / "model" / "weights.txt").write_text("v2, retrained")
    result = pod("score", spec, "r1", log, ["--shard", "0"])
    assert result.returncode == 2
    assert "changed since run r1 was planned" in json.loads(log.read_text())["reason"]


def test_a_merge_pod_fails_on_a_missing_part_and_on_clashing_columns(job, tmp_path):
    write_csv(job.data / "a.csv", range(30))
    _columns_script(job, """
    out = pd.DataFrame({"id": df["id"]})
    out["v"] = "a" if int(df["id"].iloc[0]) == 10 else 1
    return out
""")
    spec, log = job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=10,
                          output={"format": "parquet", "fileName": "out.parquet"}), tmp_path / "termination-log"
    assert pod("plan", spec, "r2", log).returncode == 0
    assert pod("score", spec, "r2", log, ["--shard", "0"]).returncode == 0
    result = pod("merge", spec, "r2", log)
    assert result.returncode == 2
    assert "column 'v' is int64 in mini-batch 0 but" in json.loads(log.read_text())["reason"]
    job.script(ECHO)
    assert pod("plan", spec, "r3", log).returncode == 0
    assert pod("score", spec, "r3", log, ["--shard", "0"]).returncode == 0
    os.remove(part_file(job.output / "_parallelrun" / "r3", 2))
    assert pod("merge", spec, "r3", log).returncode == 2
    assert re.search(r"mini-batch \d+ was committed with results", json.loads(log.read_text())["reason"])
    assert not job.final("out.parquet").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_blank_lines_are_no_rows_when_planning_by_rows(job, fmt):
    if fmt == "csv":
        (job.data / "a.csv").write_text("id,x\n1,2\n3,4\n\n5,6\n7,8\n\n")
    else:
        (job.data / "a.jsonl").write_text('{"id": 1}\n{"id": 3}\n\n{"id": 5}\n{"id": 7}\n\n')
    job.script(ECHO)
    summary = quiet_run(job.write(input={"type": "tabular", "format": fmt}, miniBatchSize=2, output={"format": "csv"}))
    assert summary["plan"]["items"] == 4 and summary["items"] == {"succeeded": 4, "failed": 0}
    assert pd.read_csv(job.final())["id"].tolist() == [1, 3, 5, 7]


def test_allow_reuse_reuses_only_a_succeeded_run_on_unchanged_input(job):
    job.files(4)
    job.script("def run(paths):\n    raise ValueError('no')\n")
    path = job.write(allowReuse=True, errorThreshold=0, runMaxTry=1)
    assert cli("run", str(path)).returncode == 1
    assert cli("run", str(path)).returncode == 1, "a failed run is not reused"
    job.script("def run(paths):\n    return paths\n")
    path = job.write(allowReuse=True)
    assert cli("run", str(path)).returncode == 0
    reused = cli("run", str(path))
    assert reused.returncode == 0 and "reusing its output" in reused.stderr
    (job.data / "item_0009.txt").write_text("new\n")
    rerun = cli("run", str(path))
    assert rerun.returncode == 0 and "reusing" not in rerun.stderr
    assert len(job.final().read_text().splitlines()) == 5


def test_a_model_the_planner_cannot_see_is_not_compared(job, tmp_path):
    """A model inside the image, or on a volume of the pods, has no version where the plan is made."""
    job.files(2)
    job.script("def run(paths):\n    return paths\n")
    spec, log = job.write(model={"uri": "model/"}), tmp_path / "termination-log"
    assert pod("plan", spec, "r4", log).returncode == 0  # no model/ yet: the planner cannot see it
    (job.root / "model").mkdir()
    (job.root / "model" / "weights.txt").write_text("v1")
    assert pod("score", spec, "r4", log, ["--shard", "0"]).returncode == 0


def test_own_output_is_recognised_under_another_name_of_the_same_store():
    from parallelrun.runner.planning.listing import _own_output
    from parallelrun.runner.spec import load_spec

    spec = load_spec({"spec": {"input": {"uri": "abfs://c/data/", "type": "files"}, "code": {"entryScript": "s.py"},
                               "output": {"uri": "az://c/data/scored/"}}})
    assert _own_output(spec, "c/data")("scored/parallel_run_step.txt")


def test_a_lease_on_object_storage_is_held_released_and_taken_over_only_when_stale(monkeypatch):
    import fsspec

    from parallelrun.runner import lock

    fs = fsspec.filesystem("memory")
    first = lock.RunLock(fs, "/lease-test/out", "run-1")
    first.acquire()
    with pytest.raises(lock.RunLocked, match=f"pid {os.getpid()}"):
        lock.RunLock(fs, "/lease-test/out", "run-1").acquire()
    monkeypatch.setattr(lock, "LEASE_SECONDS", 0.0)  # the first holder looks gone
    second = lock.RunLock(fs, "/lease-test/out", "run-1")
    second.acquire()
    first.release()  # not its lease any more: it must not delete the second's
    assert json.loads(fs.cat_file(second.path))["token"] == second._holder.token
    second.release()
    assert not fs.exists(second.path)


def test_two_takers_of_one_stale_lease_never_both_win(monkeypatch):
    """Both read the stale lease before either writes: one takes it over, the other is refused,
    and the winner's lease stays its own."""
    import fsspec

    from parallelrun.runner import lock

    fs = fsspec.filesystem("memory")
    gone = lock.RunLock(fs, "/lease-race/out", "run-1")
    fs.pipe_file(gone.path, json.dumps(dict(gone._holder.to_dict(), heartbeat=0)).encode())
    stale = fs.cat_file(gone.path)
    monkeypatch.setattr(lock.RunLock, "_read_lease", lambda self: LockHolder.from_text(stale))  # what both takers saw
    first, second = lock.RunLock(fs, "/lease-race/out", "run-1"), lock.RunLock(fs, "/lease-race/out", "run-1")
    first.acquire()
    with pytest.raises(lock.RunLocked):
        second.acquire()
    assert json.loads(fs.cat_file(first.path))["token"] == first._holder.token
    monkeypatch.undo()
    first.release()
