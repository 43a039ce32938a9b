"""Group commits (runner/commits.py): whatever dies mid-group, nothing is lost and nothing doubled."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from jobfolder import THE_SHARD, killing_script
from reportfolder import check_report, report_of
from rich.console import Console

from parallelrun.runner.commits import CommitLog, PartGroup, Parts, read_commits
from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.planning import ensure_plan, read_plan
from parallelrun.runner.records import DoneRecord
from parallelrun.runner.reportfiles import read_attempts
from parallelrun.runner.spec import load_spec_file
from parallelrun.runner.storage import filesystem

# Every call is logged; the worker that meets `item_0040` first kills itself (SIGKILL):
# the parts it ran but had not written yet are lost with it, the mini-batches it held too.
KILLS_ITS_WORKER = killing_script("item_0040.txt", "os.getpid()")

LOGGED = """
import os
from pathlib import Path

def run(mini_batch):
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write("".join(Path(p).name + "\\n" for p in mini_batch))
    return [Path(p).read_text().strip() for p in mini_batch]
"""


def quiet_run(path, **kwargs) -> dict:
    return run_local(str(path), console=Console(file=io.StringIO()), **kwargs)


def pod(command: str, spec: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parallelrun.runner", command, "--spec", str(spec), "--run-id", "r",
                           *extra], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PARALLELRUN_TERMINATION_LOG": os.devnull})


def test_sigkill_of_a_worker_mid_group_loses_and_doubles_nothing(job, calls):
    job.files(80)
    job.script(KILLS_ITS_WORKER)
    summary = quiet_run(job.write(miniBatchSize=1, processCountPerNode=2))
    assert summary["status"] == "Succeeded"
    assert summary["items"] == {"succeeded": 80, "failed": 0}
    assert job.final().read_text().split() == [str(i) for i in range(80)]  # every item once, in order
    seen = calls.read_text().split()
    assert seen.count("item_0040.txt") == 2  # the attempt that killed its worker, and the one that succeeded
    assert set(seen) == {f"item_{i:04d}.txt" for i in range(80)}
    lines, plan, _ = report_of(summary)
    check_report(lines, summary, plan)  # mini-batches lost with the worker and run again: their last run alone
    killed, succeeded = [line for line in lines if line.mini_batch == 40]
    assert killed.status == "retried" and "killed by SIGKILL" in killed.error and killed.run_seconds is None
    assert succeeded.status == "succeeded" and succeeded.attempt == 2
    assert all(line.attempt == 1 for line in lines if line.mini_batch != 40)


def test_a_run_scored_before_group_commits_resumes_and_merges(job, calls):
    """One done/ record and one part file per mini-batch, as earlier versions wrote them: a
    resumed shard runs only the rest, and the merge reads both layouts."""
    job.files(10)
    job.script(LOGGED)
    path = job.write(miniBatchSize=2, processCountPerNode=1)
    spec = load_spec_file(str(path))
    fs, out = filesystem(spec.output.uri)
    layout = Layout(out, "r", spec.output.format)
    ensure_plan(spec, fs, layout)
    header = json.loads(fs.cat_file(layout.plan_header))
    del header["chunkMiniBatches"]  # as earlier versions planned: no chunks, no claims
    fs.pipe_file(layout.plan_header, json.dumps(header).encode())
    fs.makedirs(layout.parts_dir, exist_ok=True)
    fs.makedirs(layout.done_dir, exist_ok=True)
    for mb in (0, 1):  # committed by "the earlier version": items 0-3
        fs.pipe_file(layout.part(mb), f"{2 * mb}\n{2 * mb + 1}\n".encode())
        fs.pipe_file(layout.done(mb), json.dumps({"id": mb, "status": "succeeded", "items": 2, "succeeded": 2,
                                                  "failed": 0, "attempts": 1, "errors": []}).encode())
    assert pod("score", path, "--shard", "0").returncode == 0
    assert calls.read_text().split() == [f"item_{i:04d}.txt" for i in range(4, 10)]
    assert pod("merge", path).returncode == 0
    assert job.final().read_text().split() == [str(i) for i in range(10)]
    assert not (Path(layout.root) / "done").exists() and not (Path(layout.root) / "commits").exists()


def test_a_commit_cut_short_is_ignored_and_a_part_without_commit_is_not_read(tmp_path):
    fs, _ = filesystem(str(tmp_path))
    layout = Layout(str(tmp_path), "r")
    group = PartGroup(fs, layout, "0-0")
    group.add(0, b"zero\n")
    group.add(1, b"one\n")
    name, entries = group.take().write()
    assert entries == [(0, 0, 5), (1, 5, 4)] and group.count == 0
    log = CommitLog(fs, layout, 0)
    log.stage(DoneRecord(0, "succeeded", 1, 1, 0, 1, part=(name, 0, 5)))
    assert [r.id for r in log.write()] == [0]
    # A commit file cut short by a crash (its temporary name) and a part that never got its record.
    commits = Path(layout.commits_dir(0))
    (commits / f".tmp-{'0' * 32}-{'1' * 32}.jsonl").write_text('{"id": 1, "status": "succ')
    committed = read_commits(fs, layout, range(2))
    assert list(committed) == [0]
    assert Parts(fs, layout, committed).open(0).read() == b"zero\n"


def test_a_commit_file_is_one_request_on_object_storage(tmp_path):
    """No temporary name and rename where one PUT is atomic: a group of parts and a group of
    commits are one write each."""
    import fsspec

    fs = fsspec.filesystem("memory")
    layout = Layout(f"/groups-{os.getpid()}", "r")
    writes = []
    pipe_file = fs.pipe_file
    fs.pipe_file = lambda path, data, **kw: (writes.append(path), pipe_file(path, data, **kw))[1]
    try:
        group = PartGroup(fs, layout, "0-0")
        for mb in range(50):
            group.add(mb, f"{mb}\n".encode())
        name, entries = group.take().write()
        log = CommitLog(fs, layout, 0)
        for mb, offset, length in entries:
            log.stage(DoneRecord(mb, "succeeded", 1, 1, 0, 1, part=(name, offset, length)))
        log.write()
        assert len(writes) == 2 and not any("/.tmp-" in w for w in writes)
        committed = read_commits(fs, layout, range(50))
        assert b"".join(Parts(fs, layout, committed).open(mb).read() for mb in range(50)) == \
            "".join(f"{mb}\n" for mb in range(50)).encode()
    finally:
        del fs.pipe_file
        fs.rm(layout.output_path, recursive=True)


# Each call is logged; the shard process (the pods' main process, the pool's parent) is killed
# the first time a worker meets `item_0150`, some groups committed, others staged or held.
KILLS_THE_SHARD = killing_script("item_0150.txt", THE_SHARD, sleep=0.02)


def test_sigkill_of_the_shard_mid_group_resumes_without_loss_or_double(job, calls):
    job.files(200)
    job.script(KILLS_THE_SHARD)
    path = job.write(miniBatchSize=1, processCountPerNode=2)
    assert pod("plan", path).returncode == 0
    assert pod("score", path, "--shard", "0").returncode == -9
    root = job.output / "_parallelrun" / "r"
    committed = [json.loads(line)["id"] for p in root.glob("commits/*/*.jsonl") for line in p.read_text().splitlines()]
    assert 0 < len(committed) < 200 and len(set(committed)) == len(committed)
    assert pod("score", path, "--shard", "0").returncode == 0
    assert pod("merge", path).returncode == 0
    assert job.final().read_text().split() == [str(i) for i in range(200)]
    seen = calls.read_text().split()
    assert all(seen.count(f"item_{mb:04d}.txt") == 1 for mb in committed)  # committed: never run again
    assert set(seen) == {f"item_{i:04d}.txt" for i in range(200)}
    fs, out = filesystem(str(job.output))
    layout = Layout(out, "r")
    lines = read_attempts(fs, layout)  # each attempt counted once: before the kill or after it
    check_report(lines, json.loads((root / "summary.json").read_text()), read_plan(fs, layout))
    assert [(line.mini_batch, line.attempt, line.status) for line in lines] == [(i, 1, "succeeded") for i in range(200)]
