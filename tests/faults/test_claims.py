"""Work distribution (runner/claims.py): pods claim chunks; whatever happens to a pod, every
mini-batch is committed once and the output is the plan's, byte for byte.

Pods are real processes (`python -m parallelrun.runner score`) on real files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import fsspec
import pytest
from jobfolder import THE_SHARD, killing_script
from reportfolder import check_report
from rich.console import Console

from parallelrun.runner.accounting import Counts
from parallelrun.runner.claims import Claims, chunks
from parallelrun.runner.commits import read_commits
from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.planning import read_plan
from parallelrun.runner.records import ClaimRecord, Heartbeat, ShardProgress, progress_total
from parallelrun.runner.reportfiles import read_attempts
from parallelrun.runner.spec import load_spec_file
from parallelrun.runner.storage import create_if_absent, filesystem

from .conftest import wait_until

# Logs each item with the pod index that ran it; a pod whose index is in $SLOW_PODS sleeps per item.
LOGGED = """
import os, time
from pathlib import Path

def run(mini_batch):
    index = os.environ["PARALLELRUN_SHARD_INDEX"]
    if index in os.environ.get("SLOW_PODS", "").split(","):
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.05")) * len(mini_batch))
    with open(os.environ["CALLS_LOG"], "a") as f:
        f.write("".join(f"{Path(p).name} {index}\\n" for p in mini_batch))
    return [Path(p).read_text().strip() for p in mini_batch]
"""


def start(command: str, spec: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "parallelrun.runner", command, "--spec", str(spec), "--run-id", "r",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PARALLELRUN_TERMINATION_LOG": os.devnull, **(env or {})})


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=180)
    return process.returncode, out


def pod(command: str, spec: Path, *extra: str, env: dict | None = None) -> tuple[int, str]:
    return finish(start(command, spec, *extra, env=env))


def layout_of(spec: Path) -> tuple[object, Layout]:
    s = load_spec_file(str(spec))
    fs, out = filesystem(s.output.uri)
    return fs, Layout(out, "r", s.output.format)


def ran(calls: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in calls.read_text().splitlines()] if calls.exists() else []


def assert_exactly_once(job, spec: Path, items: int) -> dict:
    """The merge succeeds; succeeded + failed == planned; the output is every item once, in plan order;
    the run report agrees (tests/reportfolder.check_report)."""
    code, out = pod("merge", spec)
    assert code == 0, out
    summary = job.summary()
    assert summary["status"] == "Succeeded"
    assert summary["items"]["succeeded"] + summary["items"]["failed"] == summary["plan"]["items"] == items
    assert summary["miniBatches"]["succeeded"] + summary["miniBatches"]["failed"] == summary["plan"]["miniBatches"]
    assert job.final().read_bytes() == "".join(f"{i}\n" for i in range(items)).encode()
    fs, layout = layout_of(spec)
    check_report(read_attempts(fs, layout), summary, read_plan(fs, layout))
    return summary


def shards_in_report(spec: Path) -> dict[str, str]:
    """Item → the pod index the run report says ran it (a mini-batch an item)."""
    return {f"item_{line.mini_batch:04d}.txt": str(line.shard) for line in read_attempts(*layout_of(spec))}


def claims_of(spec: Path) -> dict[int, ClaimRecord]:
    """Each claimed chunk's holder, at the end of its chain of takeovers."""
    fs, layout = layout_of(spec)
    return Claims(fs, layout, read_plan(fs, layout), 0).holders()


# -- the primitive -----------------------------------------------------------------------


@pytest.mark.parametrize("store", ["local", "memory"])
def test_of_many_creators_of_one_claim_exactly_one_wins(tmp_path, store):
    fs = fsspec.filesystem("memory") if store == "memory" else filesystem(str(tmp_path))[0]
    path = f"/claims-race/{store}/000000000" if store == "memory" else str(tmp_path / "claims" / "000000000")
    barrier, won = threading.Barrier(16), []

    def create(k: int) -> None:
        barrier.wait()
        if create_if_absent(fs, path, json.dumps({"k": k}).encode()):
            won.append(k)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert json.loads(fs.cat_file(path)) == {"k": won[0]}  # the winner's whole record
    assert not [p for p in os.listdir(tmp_path / "claims") if p.startswith(".tmp")] if store == "local" else True


def test_of_many_takers_of_one_stale_claim_exactly_one_wins(job, monkeypatch):
    job.files(40)
    job.script(LOGGED)
    spec = job.write(miniBatchSize=1, nodeCount=2)
    assert pod("plan", spec)[0] == 0
    fs, layout = layout_of(spec)
    plan = read_plan(fs, layout)
    gone = Claims(fs, layout, plan, 0)
    first = gone.next()[0]
    fs.pipe_file(layout.heartbeat(0), json.dumps(Heartbeat(0, gone.token, time.time() - 3600).to_dict()).encode())
    for c in chunks(plan):  # nothing left to claim: the takers look for stale holders
        create_if_absent(fs, layout.claim(c.first), json.dumps(
            ClaimRecord(c.first, 1, "live", "p", time.time()).to_dict()).encode())
    takers = [Claims(fs, layout, plan, 1, pod=f"taker-{k}") for k in range(8)]
    for t in takers:
        t._own = []
    fs.pipe_file(layout.heartbeat(1), json.dumps(Heartbeat(1, "live", time.time(), idle=True).to_dict()).encode())
    barrier, won = threading.Barrier(len(takers)), []

    def take(t: Claims) -> None:
        barrier.wait()
        if (got := t.next()) is not None:
            won.append((t.pod, got))

    threads = [threading.Thread(target=take, args=(t,)) for t in takers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(chunk.first, taken_over) for _, (chunk, taken_over) in won] == [(first.first, True)]
    assert gone.holders()[first.first].pod == won[0][0]


# -- pods -------------------------------------------------------------------------------


def test_pods_racing_for_every_chunk_commit_each_mini_batch_once(job, calls):
    """A plan of one range and four pods: pod 0 claims from the front, pods 1-3 (indexes beyond
    the plan, as after nodeCount grew) steal from the tail: every chunk is raced for."""
    job.files(200)
    job.script(LOGGED)
    spec = job.write(miniBatchSize=1, nodeCount=1, processCountPerNode=1)
    assert pod("plan", spec)[0] == 0
    pods = [start("score", spec, "--shard", str(k)) for k in range(4)]
    for p in pods:
        code, out = finish(p)
        assert code == 0, out
    runs = Counter(item for item, _ in ran(calls))
    assert set(runs.values()) == {1} and len(runs) == 200  # no mini-batch run twice
    holders = Counter(c.index for c in claims_of(spec).values())
    assert sum(holders.values()) == len(chunks(read_plan(*layout_of(spec))))
    assert len(holders) > 1  # the others took part
    assert_exactly_once(job, spec, 200)
    assert shards_in_report(spec) == dict(ran(calls))


def test_a_slow_pod_keeps_its_claims_and_the_others_finish_its_range(job, calls):
    job.files(120)
    job.script(LOGGED)
    spec = job.write(miniBatchSize=1, nodeCount=2, processCountPerNode=1)
    assert pod("plan", spec)[0] == 0
    env = {"SLOW_PODS": "0", "SLOW_SECONDS": "0.1"}
    pods = [start("score", spec, "--shard", str(k), env=env) for k in range(2)]
    for p in pods:
        code, out = finish(p)
        assert code == 0, out
    by_item = dict(ran(calls))
    assert len(ran(calls)) == 120 == len(by_item)  # nothing run twice: a slow pod is not taken over
    plan = read_plan(*layout_of(spec))
    range_0 = range(plan.shards[0].first, plan.shards[0].first + plan.shards[0].count)
    stolen = [i for i in range_0 if by_item[f"item_{i:04d}.txt"] == "1"]
    assert stolen and stolen == list(range(stolen[0], range_0.stop))  # the tail of the slow pod's range
    assert_exactly_once(job, spec, 120)
    assert shards_in_report(spec) == by_item


def killed_holding_claims(job, calls, spec: Path) -> int:
    """Pod 0 is SIGKILLed while it holds claims; returns the mini-batches it had committed."""
    assert pod("plan", spec)[0] == 0
    code, out = pod("score", spec, "--shard", "0")
    assert code == -9, out
    held = [c for c in claims_of(spec).values() if c.index == 0]
    assert held
    return len(held)


def test_a_pod_killed_holding_claims_is_taken_over_once_its_heartbeat_stops(job, calls):
    job.files(120)
    job.script(killing_script("item_0020.txt", THE_SHARD, sleep=0.01))
    spec = job.write(miniBatchSize=1, nodeCount=2, processCountPerNode=1)
    killed_holding_claims(job, calls, spec)
    fs, layout = layout_of(spec)
    wait_until(lambda: time.time() - json.loads(fs.cat_file(layout.heartbeat(0)))["at"] > 1.0, 10,
               "pod 0's heartbeat to be a second old")
    code, out = pod("score", spec, "--shard", "1", env={"PARALLELRUN_CLAIM_STALE_SECONDS": "1"})
    assert code == 0, out
    assert "took over chunk" in out
    assert all(c.index == 1 for c in claims_of(spec).values())  # pod 1 holds every chunk now
    # Progress counts pod 0's commits wherever they lie: the chunks pod 1 took over carry them (pod 0
    # may have died before it first published its progress).
    progress = {i: ShardProgress.from_dict(json.loads(fs.cat_file(layout.progress(i))))
                for i in (0, 1) if fs.exists(layout.progress(i))}
    assert progress_total(progress.values()) == progress_total([progress[1]]) == Counts(120, 0, 120, 0)
    assert_exactly_once(job, spec, 120)


def test_a_restarted_index_resumes_its_own_claims_first(job, calls):
    job.files(120)
    job.script(killing_script("item_0020.txt", THE_SHARD, sleep=0.01))
    spec = job.write(miniBatchSize=1, nodeCount=2, processCountPerNode=1)
    killed_holding_claims(job, calls, spec)
    fs, layout = layout_of(spec)
    plan = read_plan(fs, layout)
    held = sorted(c.chunk for c in claims_of(spec).values() if c.index == 0)
    committed = read_commits(fs, layout, range(plan.total_mini_batches))
    left = [f"item_{i:04d}.txt" for c in held for i in range(c, min(c + plan.chunk_mini_batches, plan.shards[0].count))
            if i not in committed]
    assert left
    before = len(calls.read_text().split())
    code, out = pod("score", spec, "--shard", "0")
    assert code == 0, out
    assert calls.read_text().split()[before:before + len(left)] == left
    assert "resuming" in out
    code, out = pod("score", spec, "--shard", "1")
    assert code == 0, out
    assert_exactly_once(job, spec, 120)


# -- local mode ------------------------------------------------------------------------------


def test_local_shards_take_over_the_tail_of_a_slow_shard(job, calls, monkeypatch):
    monkeypatch.setenv("SLOW_PODS", "0")
    monkeypatch.setenv("SLOW_SECONDS", "0.1")
    job.files(80)
    job.script(LOGGED)
    summary = run_local(str(job.write(miniBatchSize=1, nodeCount=2, processCountPerNode=1)),
                        console=Console(file=io.StringIO()))
    assert summary["status"] == "Succeeded"
    assert job.final().read_bytes() == "".join(f"{i}\n" for i in range(80)).encode()
    by_item = dict(ran(calls))
    assert len(by_item) == len(ran(calls)) == 80
    assert by_item["item_0039.txt"] == "1"  # the last of shard 0's range, run by shard 1


def test_a_preempted_pod_gives_back_the_chunks_it_had_not_started(job, calls):
    """SIGTERM (a spot node reclaimed, Kueue preempting): the chunks the pod held with nothing
    committed go back at once; those partly committed wait for its retry."""
    job.files(120)
    job.script(LOGGED)
    spec = job.write(miniBatchSize=1, nodeCount=2, processCountPerNode=1)
    assert pod("plan", spec)[0] == 0
    fs, layout = layout_of(spec)
    preempted = start("score", spec, "--shard", "0", env={"SLOW_PODS": "0", "SLOW_SECONDS": "0.2"})
    wait_until(lambda: os.path.isdir(layout.commits_dir(0)) and os.listdir(layout.commits_dir(0))
               and len(claims_of(spec)) >= 2, 60, "pod 0 to hold two chunks and commit")
    preempted.send_signal(15)
    assert finish(preempted)[0] == 143
    plan = read_plan(fs, layout)
    committed = read_commits(fs, layout, range(plan.total_mini_batches))
    kept = [c for c in claims_of(spec).values() if c.index == 0]
    assert kept and all(any(i in committed for i in range(c.chunk, c.chunk + plan.chunk_mini_batches)) for c in kept)
    code, out = pod("score", spec, "--shard", "1", env={"PARALLELRUN_CLAIM_STALE_SECONDS": "2"})
    assert code == 0, out  # it took over what pod 0 had begun once pod 0 fell silent
    assert_exactly_once(job, spec, 120)
    assert len(ran(calls)) == 120  # nothing given back had been run


# Pod 0 works slowly and is SIGKILLed once pod 1's heartbeat says it is idle (nothing left to claim).
DIES_ONCE_THE_OTHER_IS_IDLE = f"""
import json, os, signal, time
from pathlib import Path

def run(mini_batch):
    if os.environ["PARALLELRUN_SHARD_INDEX"] == "0":
        time.sleep(0.1 * len(mini_batch))
        beat = Path(os.environ["HEARTBEAT_OF_1"])
        if beat.exists() and json.loads(beat.read_text())["idle"]:
            os.kill({THE_SHARD}, signal.SIGKILL)
    return [Path(p).read_text().strip() for p in mini_batch]
"""


def test_an_idle_pod_waits_and_takes_over_a_pod_lost_after_it_had_nothing_left(job):
    """As after a scale-down or an index that failed for good: nobody retries the lost pod,
    so the one that waits finishes its chunks."""
    job.files(60)
    job.script(DIES_ONCE_THE_OTHER_IS_IDLE)
    spec = job.write(miniBatchSize=1, nodeCount=2, processCountPerNode=1)
    assert pod("plan", spec)[0] == 0
    _fs, layout = layout_of(spec)
    env = {"PARALLELRUN_CLAIM_STALE_SECONDS": "1", "HEARTBEAT_OF_1": layout.heartbeat(1)}
    pods = [start("score", spec, "--shard", str(k), env=env) for k in range(2)]
    lost, (code, out) = finish(pods[0]), finish(pods[1])
    assert lost[0] == -9, lost[1]
    assert code == 0, out
    assert "took over chunk" in out
    assert_exactly_once(job, spec, 60)
