"""The run report's report/minibatches.csv and report/resources.csv, from real local runs:
every way an attempt ends, several shards, input files and rows."""

from __future__ import annotations

import datetime
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reportfolder import check_report, known_samples, report_of
from rich.console import Console

from parallelrun.runner import sampling
from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.records import AttemptLine
from parallelrun.runner.reportfiles import read_attempts, read_resources, resources_csv, write_report
from parallelrun.runner.storage import filesystem

# What run() does with each file, as its text says: "ok", "raise" (always), "flaky" (the first
# attempt raises), "short" (no result: a failed item), "exit" (the worker dies, every attempt),
# "slow" (sleeps 0.3 s), "busy" (computes 0.3 s).
SCRIPT = """
import os, time
from pathlib import Path

def run(mini_batch):
    out = []
    for path in mini_batch:
        action = Path(path).read_text().strip()
        if action == "raise":
            raise ValueError(f"bad item, {Path(path).name}\\nsecond line")
        if action == "flaky" and not Path(path + ".seen").exists():
            Path(path + ".seen").touch()
            raise RuntimeError("first attempt fails")
        if action == "exit":
            os._exit(7)
        if action == "slow":
            time.sleep(0.3)
        if action == "busy":
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass
        if action != "short":
            out.append(Path(path).name)
    return out
"""


def quiet_run(path, **kw):
    return run_local(str(path), console=Console(file=io.StringIO()), **kw)


def check_plausible(lines: list[AttemptLine], began: datetime.datetime, shards: int, workers: int) -> None:
    ended = datetime.datetime.now(datetime.timezone.utc)
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    for line in lines:
        start = datetime.datetime.fromisoformat(line.start.replace("Z", "+00:00"))
        assert began - datetime.timedelta(seconds=1) <= start <= ended
        assert 0 <= line.seconds <= (ended - began).total_seconds()
        if line.run_seconds is not None:
            assert 0 <= line.run_seconds <= line.seconds + 1e-3
            assert line.read_seconds >= 0
        assert line.pod == host and 0 <= line.shard < shards and line.worker in range(workers)
        assert len(line.error) <= 200 and "\n" not in line.error
        assert (line.error == "") == (line.status == "succeeded" and not line.failed)


def test_each_attempt_is_a_line_and_the_last_ones_agree_with_the_summary(job):
    job.script(SCRIPT)
    actions = ["ok", "raise", "flaky", "short", "exit", "slow", "ok", "flaky"] * 2
    for i, action in enumerate(actions):
        (job.data / f"item_{i:03d}.txt").write_text(action)
    began = datetime.datetime.now(datetime.timezone.utc)
    summary = quiet_run(job.write(miniBatchSize=1, runMaxTry=3, nodeCount=2, errorThreshold=-1,
                                  miniBatchErrorThreshold=-1))
    lines, plan, _ = report_of(summary)
    check_report(lines, summary, plan)
    check_plausible(lines, began, shards=2, workers=2)
    # An attempt whose result died unreported with its worker (an "exit" in the same worker) is
    # not counted: it runs again. A flaky item may so succeed at its first counted attempt.
    tries = {"ok": {1}, "raise": {3}, "flaky": {1, 2}, "short": {1}, "exit": {3}, "slow": {1}}
    for i, action in enumerate(actions):
        attempts = [line for line in lines if line.mini_batch == i]
        assert len(attempts) in tries[action], (action, attempts)
        last = attempts[-1]
        assert last.status == ("failed" if action in ("raise", "exit") else "succeeded")
        assert (last.items, last.succeeded, last.failed) == ((1, 0, 1) if action in ("raise", "exit", "short")
                                                             else (1, 1, 0))
        if action == "raise":
            assert last.error == f"ValueError: bad item, item_{i:03d}.txt"
        if action == "exit":  # the pool measured it: run() and reading are not known
            assert "exited with code 7" in last.error and last.run_seconds is None and last.seconds > 0
        if action == "short":
            assert last.error == "run() returned 0 results for 1 items"
        if action == "slow":
            assert 0.3 <= last.run_seconds <= last.seconds
        if action == "flaky" and len(attempts) == 2:
            assert attempts[0].status == "retried" and attempts[0].error == "RuntimeError: first attempt fails"
            assert (attempts[0].succeeded, attempts[0].failed) == (0, 0)


def test_rows_input_counts_rows_and_a_clean_run_reports_after_its_commits_are_gone(job):
    table = pa.table({"x": list(range(1000))})
    pq.write_table(table, job.data / "a.parquet", row_group_size=100)
    pq.write_table(table, job.data / "b.parquet", row_group_size=100)
    job.script("def run(df):\n    return df\n")
    began = datetime.datetime.now(datetime.timezone.utc)
    summary = quiet_run(job.write(input={"type": "tabular", "format": "parquet"}, miniBatchSize=150,
                                  nodeCount=3, output={"format": "csv"}))
    lines, plan, layout = report_of(summary)
    assert not Path(layout.all_commits_dir).exists()  # the report outlives the commit records
    check_report(lines, summary, plan)
    check_plausible(lines, began, shards=3, workers=2)
    assert sum(line.items for line in lines) == 2000 and all(line.status == "succeeded" for line in lines)


def test_a_merged_run_with_no_mini_batch_has_the_header_alone(job):
    job.script("def run(b):\n    return b\n")
    (job.data / "empty.csv").write_text("x\n")
    summary = quiet_run(job.write(input={"type": "tabular", "format": "csv"}))
    lines, plan, layout = report_of(summary)
    assert lines == [] or len(lines) == plan.total_mini_batches
    assert Path(layout.report_mini_batches).read_text().startswith("miniBatch,chunk,shard,pod,worker,")


def test_resources_has_samples_of_every_worker_and_of_the_pod(job, monkeypatch):
    monkeypatch.setattr(sampling, "SAMPLE_SECONDS", 0.05)
    monkeypatch.setattr(sampling, "FIRST_SAMPLE_SECONDS", 0.0)
    job.script(SCRIPT)
    for i in range(8):
        (job.data / f"item_{i:03d}.txt").write_text("busy")
    summary = quiet_run(job.write(miniBatchSize=1, nodeCount=2))
    _, _, layout = report_of(summary)
    fs, _ = filesystem(layout.output_path)
    samples = read_resources(fs, layout)
    assert [s.time for s in samples] == sorted(s.time for s in samples)
    workers = {(s.shard, s.worker) for s in samples}
    assert workers == {(0, "0"), (0, "1"), (1, "0"), (1, "1"), (0, "pod"), (1, "pod")}
    assert all(s.pid > 0 and s.rss > 0 and s.cpu >= 0 and s.gpu is None for s in samples)
    assert any(s.cpu > 0 for s in samples if s.worker != "pod")
    for s in samples:
        if s.worker == "pod":
            same = [w for w in samples if w.time == s.time and w.shard == s.shard and w.worker != "pod"]
            assert s.rss > sum(w.rss for w in same)  # the workers, their zygote and the shard's process
    assert not fs.exists(layout.resource_pieces_dir)  # gathered by the merge


class FakeNvml:
    """pynvml as nvidia-ml-py has it, two devices: 0 lists the sampled process, 1 does not."""

    class NVMLError(Exception):
        pass

    def __init__(self, pid: int):
        self.pid, self.initialized, self.shut = pid, False, False

    def nvmlInit(self):
        self.initialized = True

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):
        if index > 1:
            raise self.NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetUtilizationRates(self, handle):
        return type("Utilization", (), {"gpu": 40 + handle, "memory": 10})()

    def nvmlDeviceGetMemoryInfo(self, handle):
        return type("Memory", (), {"used": 5 * 2**30 + handle, "total": 80 * 2**30, "free": 0})()

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        process = type("Process", (), {"pid": self.pid, "usedGpuMemory": 3 * 2**30})()
        return [process] if handle == 0 else []


@pytest.mark.parametrize("visible,gpu,utilization,memory", [
    ("0", 0, 40.0, 3 * 2**30),  # NVML lists the process: what it holds
    ("1,0", 1, 41.0, 5 * 2**30 + 1),  # it does not (a container's pid): the device's used memory
    ("GPU-8f1c", None, None, None),  # a UUID: no index to sample
    ("7", 7, None, None),  # NVML cannot tell: no figures, the sample goes on
])
def test_gpu_columns_from_nvml(tmp_path, monkeypatch, visible, gpu, utilization, memory):
    fake = FakeNvml(os.getpid())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    fs, path = filesystem(str(tmp_path))
    layout = Layout(path, "run-0123456789")
    sampler = sampling.ResourceSampler(fs, layout, 0, "pod-a", "tok", lambda: [(0, os.getpid(), visible)])
    worker, pod = sampler.sample()
    assert (worker.worker, worker.gpu, worker.gpu_utilization) == ("0", gpu, utilization)
    assert worker.gpu_memory == memory
    assert pod.worker == "pod" and pod.gpu is None
    assert pod.gpu_memory == {"0": 3 * 2**30, "1,0": 0}.get(visible)
    sampler.start().stop()
    assert fake.shut
    [piece] = fs.ls(layout.resource_pieces_dir, detail=False)
    assert Path(piece).read_text().startswith("time,pod,shard,worker,pid,cpu,rss,gpu,gpuUtilization,gpuMemory\n")


def test_without_gpus_or_nvidia_ml_py_there_are_no_gpu_columns_and_nvml_is_not_loaded(tmp_path, monkeypatch):
    fake = FakeNvml(os.getpid())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    fs, path = filesystem(str(tmp_path))
    sampler = sampling.ResourceSampler(fs, Layout(path, "r"), 0, "pod-a", "tok", lambda: [(0, os.getpid(), None)])
    [worker, _] = sampler.sample()
    assert worker.gpu is None and sampler.nvml is None and not fake.initialized
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: the import fails
    sampler = sampling.ResourceSampler(fs, Layout(path, "r"), 0, "pod-a", "tok", lambda: [(0, os.getpid(), "0")])
    [worker, _] = sampler.sample()
    assert (worker.gpu, worker.gpu_utilization, worker.gpu_memory) == (None, None, None)


def test_a_process_that_ended_unreaped_or_is_gone_has_no_sample():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline, "the child never ended"
            time.sleep(0.01)
        assert sampling.cpu_and_rss(child.pid) is None  # a zombie: its statm reads 0
    finally:
        child.wait()
    assert sampling.cpu_and_rss(child.pid) is None
    cpu, rss, started = sampling.cpu_and_rss(os.getpid())
    assert cpu > 0 and rss > 0 and started > 0


def test_the_merge_gathers_every_pods_pieces_by_time_and_no_write_cut_short(tmp_path):
    fs, path = filesystem(str(tmp_path))
    layout = Layout(path, "run-0123456789")
    samples = known_samples()
    pieces = Path(layout.resource_pieces_dir)
    pieces.mkdir(parents=True)
    for shard in (0, 1):  # each pod's piece, its own samples
        mine = [s for s in samples if s.shard == shard]
        Path(layout.resource_piece(shard, "tok", 0)).write_text(resources_csv(mine, header=True))
    cut_short = pieces / f".tmp-0123-{Path(layout.resource_piece(0, 'tok', 1)).name}"
    cut_short.write_text(resources_csv(samples, header=True))  # a pod killed while it wrote
    write_report(fs, layout, {})
    assert read_resources(fs, layout) == sorted(samples, key=lambda s: (s.time, s.pod, s.shard, s.worker))
    assert read_attempts(fs, layout) == []
