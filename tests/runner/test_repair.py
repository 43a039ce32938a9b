"""Repair runs: --retry-failed (spec.retryFailed) reruns only the failed mini-batches of a
finished run with a fixed script, and splices their results into the same ordered output."""

import io
import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.repair import RepairError, prepare_repair, repair_target
from parallelrun.runner.spec import load_spec_file
from parallelrun.runner.storage import filesystem

# Fails on the items named in BROKEN (a bug), logs every item it meets.
SCRIPT = """
import os
from pathlib import Path

BROKEN = {broken}

def run(mini_batch):
    out = []
    for path in mini_batch:
        name = Path(path).name
        with open(os.environ["CALLS_LOG"], "a") as f:
            f.write(name + "\\n")
        if Path(path).read_text().strip() in BROKEN:
            raise ValueError(f"bug on {{name}}")
        out.append(f"{{name}} {{Path(path).read_text().strip().upper()}}")
    return out
"""


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def make(job, kinds):
    for i, kind in enumerate(kinds):
        (job.data / f"item_{i:03d}.txt").write_text(kind)


def errors(summary) -> list[str]:
    return sorted(json.loads(line)["item"].rsplit("/", 1)[-1] for line in open(summary["errors"]))


def test_only_the_failed_mini_batches_run_again_and_are_spliced_in_order(job, calls):
    kinds = ["ok", "ok", "bad", "ok", "ok", "ok", "ok", "worse", "ok", "ok"]
    make(job, kinds)
    job.script(SCRIPT.format(broken={"bad", "worse"}))
    path = job.write(miniBatchSize=2, runMaxTry=1)
    first = quiet_run(path)
    assert first["items"] == {"succeeded": 6, "failed": 4}
    before = job.final().read_bytes()
    calls.write_text("")
    job.script(SCRIPT.format(broken={"worse"}))  # the bug fixed for "bad", not for "worse"
    repaired = quiet_run(path, retry_failed=True)
    assert repaired["runId"] == first["runId"]  # the same run, a new version of its output
    assert sorted(calls.read_text().split()) == [f"item_{i:03d}.txt" for i in (2, 3, 6, 7)]  # only those
    assert repaired["items"] == {"succeeded": 8, "failed": 2}
    assert errors(repaired) == ["item_006.txt", "item_007.txt"]  # only what still fails
    assert job.final().read_text().splitlines() == [
        f"item_{i:03d}.txt {k.upper()}" for i, k in enumerate(kinds) if i not in (6, 7)]
    assert (job.output / "parallel_run_step.txt.previous").read_bytes() == before
    calls.write_text("")
    job.script(SCRIPT.format(broken=set()))
    again = quiet_run(path, retry_failed=True)
    assert sorted(calls.read_text().split()) == ["item_006.txt", "item_007.txt"]
    assert again["items"] == {"succeeded": 10, "failed": 0} and errors(again) == []
    assert job.final().read_text().splitlines() == [f"item_{i:03d}.txt {k.upper()}" for i, k in enumerate(kinds)]


TABLE = """
import pandas as pd

def run(df):
    if {broken} and (df["id"] % 7 == 3).any():
        raise ValueError("bug")
    return df.assign(score=df["id"] * 2)
"""


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_tabular_output_formats_are_spliced(job, fmt):
    pq.write_table(pa.table({"id": list(range(100))}), job.data / "t.parquet", row_group_size=10)
    job.script(TABLE.format(broken=True))
    path = job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=10, runMaxTry=1,
                     output={"format": fmt, "fileName": f"out.{fmt}"})
    assert quiet_run(path)["miniBatches"]["failed"] > 0
    job.script(TABLE.format(broken=False))
    summary = quiet_run(path, retry_failed=True)
    assert summary["items"] == {"succeeded": 100, "failed": 0}
    read = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt]
    table = read(job.final(f"out.{fmt}"))
    assert table["id"].tolist() == list(range(100)) and table["score"].tolist() == [2 * i for i in range(100)]


def test_nothing_to_repair_and_nothing_finished(job, calls):
    make(job, ["ok", "ok"])
    job.script(SCRIPT.format(broken=set()))
    path = job.write(miniBatchSize=1)
    with pytest.raises(RepairError, match="no finished run of test under .* to repair; run the job first"):
        quiet_run(path, retry_failed=True)
    first = quiet_run(path)
    calls.write_text("")
    again = quiet_run(path, retry_failed=True)
    assert (again["runId"], again["items"]) == (first["runId"], first["items"]) and calls.read_text() == ""


def test_a_repair_cut_short_goes_on(job, calls):
    make(job, ["ok", "bad", "ok", "bad"])
    job.script(SCRIPT.format(broken={"bad"}))
    path = job.write(miniBatchSize=1, runMaxTry=1)
    quiet_run(path)
    job.script(SCRIPT.format(broken=set()))
    spec = load_spec_file(str(path))
    fs, out = filesystem(spec.output.uri)
    run_id, summary = repair_target(fs, out, spec)
    assert prepare_repair(spec, fs, Layout(out, run_id), summary)  # then the process died
    calls.write_text("")
    summary = quiet_run(path, retry_failed=True)
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    assert sorted(calls.read_text().split()) == ["item_001.txt", "item_003.txt"]


def test_the_command_and_the_field(job, calls, tmp_path):
    make(job, ["ok", "bad"])
    job.script(SCRIPT.format(broken={"bad"}))
    path = job.write(miniBatchSize=1, runMaxTry=1)
    command = [sys.executable, "-m", "parallelrun.cli", "run", str(path)]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    job.script(SCRIPT.format(broken=set()))
    proc = subprocess.run([*command, "--retry-failed"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Repairing run" in proc.stderr
    assert job.final().read_text().splitlines() == ["item_000.txt OK", "item_001.txt BAD"]
    field = job.write(miniBatchSize=1, runMaxTry=1, retryFailed=True)
    assert quiet_run(field)["items"] == {"succeeded": 2, "failed": 0}  # nothing left to repair


def _commit_line(mb: int, failed: int, errors: str = "") -> str:
    """A commit file's line as runs write it (commits.record_line)."""
    status = "failed" if failed == 2 else "succeeded"
    return (f'{{"id":{mb},"status":"{status}","items":2,"attempts":1,"errors":[{errors}],"schema":null,'
            f'"succeeded":{2 - failed},"failed":{failed},"part":null,"report":null}}')


def test_a_repair_drops_exactly_the_failed_records_and_keeps_the_other_lines_byte_for_byte(tmp_path):
    """Commit files as runs write them (a mini-batch committed twice, by a holder that went on after a
    takeover: its first record counts) and a done/ record of a run before group commits."""
    from parallelrun.runner.repair import _drop_failed

    error = ('{"miniBatch":1,"item":"/in/b.txt","source":{"files":["/in/a.txt","/in/b.txt"]},"items":1,'
             '"attempts":1,"error":"ValueError: bug","traceback":null}')
    root = tmp_path / "_parallelrun" / "job-0123456789"
    pods = {"00000": {"a.jsonl": [_commit_line(0, 0), _commit_line(1, 1, error), _commit_line(2, 0)],
                      "b.jsonl": [_commit_line(3, 2, error.replace('"miniBatch":1', '"miniBatch":3'))]},
            "00001": {"c.jsonl": [_commit_line(4, 0), _commit_line(5, 0)],
                      "d.jsonl": [_commit_line(3, 0), _commit_line(6, 0)],  # 3 again, after b.jsonl: not counted
                      ".e.jsonl": [_commit_line(7, 1)]}}  # a write cut short: no commit
    for pod, files in pods.items():
        (root / "commits" / pod).mkdir(parents=True)
        for name, lines in files.items():
            (root / "commits" / pod / name).write_text("\n".join(lines) + "\n")
    (root / "done").mkdir()
    (root / "done" / "000000008.json").write_text(_commit_line(8, 1))
    (root / "done" / "000000009.json").write_text(_commit_line(9, 0))
    fs, _ = filesystem(str(tmp_path))
    untouched = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    _drop_failed(fs, Layout(str(tmp_path), "job-0123456789"), range(10))

    commits = root / "commits"
    assert (commits / "00000" / "a.jsonl").read_text() == _commit_line(0, 0) + "\n" + _commit_line(2, 0) + "\n"
    assert not (commits / "00000" / "b.jsonl").exists()
    assert (commits / "00001" / "d.jsonl").read_text() == _commit_line(6, 0) + "\n"
    assert not (root / "done" / "000000008.json").exists()
    for path in (commits / "00001" / "c.jsonl", commits / "00001" / ".e.jsonl", root / "done" / "000000009.json"):
        assert path.read_bytes() == untouched[path]
