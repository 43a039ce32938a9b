"""Resuming a run on az:// through the in-pod entry point (`python -m parallelrun.runner`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

RUN_ID = "resume-1"


def _csv(ids) -> str:
    return "id\n" + "".join(f"{i}\n" for i in ids)


def test_rerun_keeps_committed_mini_batches(az_job, tmp_path):
    az_job.upload("in/a.csv", _csv(range(30)))
    az_job.upload("in/b.csv", _csv(range(30, 50)))
    calls = tmp_path / "calls.log"  # one line per run() call, written by the scoring script
    az_job.script("""
        import argparse

        log = None

        def init():
            global log
            parser = argparse.ArgumentParser()
            parser.add_argument("--calls")
            log = parser.parse_args().calls

        def run(df):
            with open(log, "a") as f:
                f.write(f"{int(df['id'].iloc[0])}\\n")
            return [f"{i} {i * i}" for i in df["id"]]
        """)
    spec = az_job.write(input={"type": "tabular", "format": "csv"}, miniBatchSize=10, nodeCount=1,
                        arguments=["--calls", str(calls)])
    termination_log = tmp_path / "termination-log"

    def runner(*command: str) -> str:
        """What a pod runs: the in-pod entry point, as a process of its own (credentials from the env)."""
        env = dict(os.environ, PARALLELRUN_TERMINATION_LOG=str(termination_log))
        result = subprocess.run([sys.executable, "-m", "parallelrun.runner", *command, "--spec", str(spec),
                                 "--run-id", RUN_ID], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-5000:]
        return result.stdout

    run_dir = f"out/_parallelrun/{RUN_ID}"
    totals = json.loads(runner("plan"))
    assert totals["miniBatches"] == 5 and totals["items"] == 50
    runner("score", "--shard", "0")
    assert sorted(calls.read_text().split(), key=int) == ["0", "10", "20", "30", "40"]

    # Mini-batch 3 (rows 30-39) lost its commit record, as if the pod had died before publishing
    # its group (its part, written, is left without one): a rerun scores only mini-batch 3, and
    # the merge has every row once, in order.
    commits = az_job.fs.ls(az_job.blob(f"{run_dir}/commits/00000"), detail=False)
    assert commits, "the shard committed its mini-batches in commits/"
    for path in commits:
        lines = az_job.fs.cat_file(path).decode().splitlines()
        az_job.fs.pipe_file(path, "".join(f"{line}\n" for line in lines if json.loads(line)["id"] != 3).encode())
    runner("score", "--shard", "0")
    assert calls.read_text().split()[5:] == ["30"]
    # The pod that resumed reports its whole shard, committed before or now.
    assert json.loads(termination_log.read_text()) == {"miniBatches": {"succeeded": 5, "failed": 0},
                                                       "items": {"succeeded": 50, "failed": 0}}
    runner("merge")
    assert az_job.read("out/parallel_run_step.txt").decode() == "".join(f"{i} {i * i}\n" for i in range(50))
    summary = json.loads(az_job.read(f"{run_dir}/summary.json"))
    assert summary["status"] == "Succeeded" and summary["items"] == {"succeeded": 50, "failed": 0}
    assert not az_job.exists(f"{run_dir}/parts") and not az_job.exists(f"{run_dir}/commits"), \
        "parts and commits are deleted once the output is published"
    assert summary["miniBatches"] == {"succeeded": 5, "failed": 0, "total": 5}
