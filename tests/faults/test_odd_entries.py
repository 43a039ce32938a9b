"""Odd entries in an input folder: a dangling link, a link in a loop, a link to itself, a fifo,
a socket, an unreadable file. None refuses the run or hangs it: a files input lists each as a
failed item with its error (succeeded + failed == planned), a tabular one skips it with a
warning naming it and scores the rows of the others, byte-identical to a run without it."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jobfolder import JobFolder
from rich.console import Console

from parallelrun.runner.local import run_local

IS_ROOT = os.geteuid() == 0


def dangling(folder, name):
    (folder / name).symlink_to(folder / "nowhere")
    return "No such file or directory"


def loop(folder, name):
    (folder / name).symlink_to(folder / f"{name}.other")
    (folder / f"{name}.other").symlink_to(folder / name)
    return "Too many levels of symbolic links"


def self_link(folder, name):
    (folder / name).symlink_to(folder / name)
    return "Too many levels of symbolic links"


def fifo(folder, name):
    os.mkfifo(folder / name)
    return "is a fifo, not a regular file"


def a_socket(folder, name):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / name))
    sock.close()
    return "is a socket, not a regular file"


ODD = {"dangling": dangling, "loop": loop, "self_link": self_link, "fifo": fifo, "socket": a_socket}

SCRIPT = """
import pandas as pd

def run(mini_batch):
    if isinstance(mini_batch, pd.DataFrame):
        return [f"row {v}" for v in mini_batch["v"]]
    return [open(p).read().strip() for p in mini_batch]
"""


@pytest.fixture
def job(tmp_path):
    folder = JobFolder(tmp_path)
    folder.script(SCRIPT)
    return folder


def run(job, **spec):
    return run_local(str(job.write(runMaxTry=1, runInvocationTimeout=20, **spec)), console=Console(file=io.StringIO()))


def errors(job):
    [path] = job.output.glob("_parallelrun/*/errors.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("odd", ODD)
def test_files_input_lists_an_odd_entry_as_a_failed_item(job, odd):
    job.files(4)
    why = ODD[odd](job.data, "item_0002.odd")
    summary = run(job, miniBatchSize=1)
    planned = summary["plan"]["items"]
    assert summary["status"] == "Succeeded"
    assert summary["items"]["succeeded"] == 4 and summary["items"]["succeeded"] + summary["items"]["failed"] == planned
    failed = errors(job)
    assert {e["item"] for e in failed} == {str(job.data / name) for name in os.listdir(job.data)
                                           if name.startswith("item_0002.odd")}
    assert all(why in e["error"] for e in failed)
    assert job.final().read_text().split() == ["0", "1", "2", "3"]


def _csv(job, name):
    (job.data / name).write_text("v\n" + "".join(f"{i}\n" for i in range(5)))
    return {"input": {"type": "tabular", "format": "csv"}, "miniBatchSize": 2}


def _parquet(job, name):
    pq.write_table(pa.table({"v": list(range(5))}), job.data / name, row_group_size=2)
    return {"input": {"type": "tabular", "format": "parquet"}, "miniBatchSize": 2}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("odd", ODD)
def test_tabular_input_skips_an_odd_entry_with_a_warning(job, kind, odd, caplog):
    spec = {"csv": _csv, "parquet": _parquet}[kind](job, f"a.{kind}")
    plain = run(job, **spec)
    alone = job.final().read_bytes()
    ODD[odd](job.data, f"b.{kind}")
    summary = run(job, output={"uri": "output2/"}, **spec)
    assert summary["status"] == "Succeeded" and summary["items"] == plain["items"]
    assert (job.root / "output2/parallel_run_step.txt").read_bytes() == alone
    assert f"spec.input.uri: {job.data}/b.{kind} skipped: " in caplog.text


def test_tabular_input_of_odd_entries_only_is_refused(job):
    dangling(job.data, "a.csv")
    with pytest.raises(Exception, match="spec.input.uri: no readable input files under"):
        run(job, input={"type": "tabular", "format": "csv"})


@pytest.mark.skipif(not IS_ROOT, reason="runs the job as another user (nobody): needs root")
def test_an_unreadable_file_is_a_failed_item(job, tmp_path):
    """As a user the file's mode shuts out (root ignores modes): the others are scored."""
    job.files(3)
    (job.data / "item_0001.txt").chmod(0o000)
    path = job.write(runMaxTry=1, miniBatchSize=1)
    os.chmod(tmp_path, 0o777)
    for p in [tmp_path, *tmp_path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o777)
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                             "parallelrun.cli", "run", str(path)], capture_output=True, text=True, timeout=240,
                            cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)))
    if result.returncode != 0 and not job.output.exists():  # the interpreter or setpriv shut out
        pytest.skip(f"cannot run as another user here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    [e] = errors(job)
    assert e["item"] == str(job.data / "item_0001.txt") and "Permission denied" in e["error"]
    assert job.final().read_text().split() == ["0", "2"]
