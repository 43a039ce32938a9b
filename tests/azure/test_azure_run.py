"""Whole local-mode runs with input, model and output on az:// (Azurite through adlfs)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from reportfolder import check_report
from rich.console import Console

from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.planning import read_plan
from parallelrun.runner.reportfiles import read_attempts, read_resources


def _csv(ids) -> str:
    return "id,value\n" + "".join(f"{i},{i * 0.5}\n" for i in ids)


def test_tabular_run_with_model_and_output_on_azure(az_job):
    az_job.upload("in/a.csv", _csv(range(40)))
    az_job.upload("in/b.csv", _csv(range(40, 65)))
    az_job.upload("model/weights.json", json.dumps({"factor": 3}))
    az_job.upload("model/extra/notes.txt", "nested files come along")
    az_job.script("""
        import json
        import os

        factor = None

        def init():
            global factor
            model = os.environ["PARALLELRUN_MODEL_DIR"]
            assert os.path.isfile(os.path.join(model, "extra", "notes.txt")), os.listdir(model)
            with open(os.path.join(model, "weights.json")) as f:
                factor = json.load(f)["factor"]

        def run(df):
            if 23 in df["id"].values:
                raise ValueError("cannot score row 23")
            return [f"{i} {v * factor}" for i, v in zip(df["id"], df["value"])]
        """)
    path = az_job.write(input={"type": "tabular", "format": "csv"}, model={"uri": az_job.uri("model/")},
                        miniBatchSize=10, nodeCount=2, runMaxTry=2, errorThreshold=20,
                        output={"fileName": "scores.txt"})

    summary = run_local(str(path))

    expected = "".join(f"{i} {i * 0.5 * 3}\n" for i in range(65) if not 20 <= i < 30)
    assert az_job.read("out/scores.txt").decode() == expected
    run_dir = f"out/_parallelrun/{summary['runId']}"
    stored = json.loads(az_job.read(f"{run_dir}/summary.json"))
    assert stored["status"] == "Succeeded" and stored["reason"] is None
    assert stored["miniBatches"] == {"succeeded": 6, "failed": 1, "total": 7}
    assert stored["items"] == {"succeeded": 55, "failed": 10}
    assert stored["output"] == {"uri": az_job.uri("out/scores.txt"), "bytes": len(expected)}
    assert stored["errors"] == az_job.uri(f"{run_dir}/errors.jsonl")
    errors = [json.loads(line) for line in az_job.read(f"{run_dir}/errors.jsonl").decode().splitlines()]
    assert len(errors) == 1
    error = errors[0]
    assert error["miniBatch"] == 2 and error["items"] == 10 and error["attempts"] == 2
    assert error["source"]["file"] == az_job.uri("in/a.csv")
    assert "ValueError: cannot score row 23" in error["error"]
    layout = Layout(az_job.blob("out"), summary["runId"])  # the run report reached the blob container
    lines = read_attempts(az_job.fs, layout)
    check_report(lines, stored, read_plan(az_job.fs, layout))
    assert [(line.attempt, line.status) for line in lines if line.mini_batch == 2] == [(1, "retried"), (2, "failed")]
    assert all(sample.rss > 0 for sample in read_resources(az_job.fs, layout))


def test_files_run_from_azure_gets_local_paths(az_job, tmp_path):
    """Through the CLI, in a process of its own: credentials come from the inherited environment."""
    names = ["img_0.txt", "img_1.txt", "img_2.txt", "img_3.txt", "img_4.txt", "sub/img_5.txt"]
    for i, name in enumerate(names):
        az_job.upload(f"in/{name}", f"content {i}\n")
    az_job.upload("in/_SUCCESS", "")
    az_job.script("""
        import os

        def run(mini_batch):
            out = []
            for path in mini_batch:
                assert os.path.isabs(path) and os.path.isfile(path), path
                with open(path) as f:
                    out.append(f"{path} {f.read().strip()}")
            return out
        """)
    path = az_job.write(miniBatchSize=2, nodeCount=1, processCountPerNode=2)

    env = dict(os.environ, PARALLELRUN_TERMINATION_LOG=str(tmp_path / "termination-log"))
    result = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(path)],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    lines = az_job.read("out/parallel_run_step.txt").decode().splitlines()
    paths = [line.split(" ", 1)[0] for line in lines]
    assert [line.split(" ", 1)[1] for line in lines] == [f"content {i}" for i in range(6)]
    # run() got local copies (not az:// URLs) that keep their relative folders, e.g. .../sub/img_5.txt.
    assert all(p.startswith("/") and p.endswith("/" + name) for p, name in zip(paths, names))


def test_workers_of_an_azure_run_have_adlfs_before_the_plan_arrives(az_job):
    """Their zygote imported it (shard.preload_storage) while the run was planned: a worker
    does not import the Azure SDK (0.7-1 s) after the plan, on the way to its first fetch."""
    for i in range(4):
        az_job.upload(f"in/f{i}.txt", f"{i}\n")
    az_job.script("""
        import sys

        LOADED = "adlfs" in sys.modules  # as the entry script is imported, before init() and the plan

        def run(mini_batch):
            return [f"{LOADED}" for _ in mini_batch]
        """)
    summary = run_local(str(az_job.write(miniBatchSize=1, processCountPerNode=2)), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 4, "failed": 0}
    assert az_job.read("out/parallel_run_step.txt").decode().split() == ["True"] * 4


def test_side_outputs_on_blob_are_published_once(az_job):
    """Side outputs of a summaryOnly job on az://: each under out/ once, nothing kept in side/."""
    for i in range(6):
        az_job.upload(f"in/doc_{i}.txt", f"text {i}")
    az_job.script("""
        import os
        from pathlib import Path

        def run(mini_batch):
            out = Path(os.environ["PARALLELRUN_OUTPUT_DIR"])
            for path in mini_batch:
                (out / "chunks").mkdir(exist_ok=True)
                (out / "chunks" / (Path(path).stem + ".txt")).write_text(Path(path).read_text().upper())
            return mini_batch
        """)
    summary = run_local(str(az_job.write(miniBatchSize=2, output={"action": "summaryOnly"})),
                        console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 6, "failed": 0}
    assert sorted(az_job.fs.ls(az_job.blob("out/chunks"), detail=False)) == [
        az_job.blob(f"out/chunks/doc_{i}.txt") for i in range(6)]
    assert az_job.read("out/chunks/doc_3.txt") == b"TEXT 3"
    assert not [p for p in az_job.fs.find(az_job.blob("out/_parallelrun")) if "/side/" in p]
