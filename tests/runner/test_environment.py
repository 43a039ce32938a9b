"""What a worker sees: arguments, model and side inputs, logging level, its own GPUs."""

import io
import json

from rich.console import Console

from parallelrun.runner.local import run_local
from parallelrun.runner.resources import gpu_assignment

REPORT = """
import json, logging, os, sys, time
from pathlib import Path

def init():
    logging.getLogger("user").debug("debug from init")
    logging.getLogger("user").info("info from init")
    seen = {"argv": sys.argv[1:], "model": os.environ.get("PARALLELRUN_MODEL_DIR"),
            "aml_model": os.environ.get("AZUREML_MODEL_DIR"),
            "labels": os.environ.get("PARALLELRUN_SIDE_INPUT_LABELS"),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
            "model_file": (Path(os.environ["PARALLELRUN_MODEL_DIR"]) / "weights.txt").read_text()}
    with open(os.environ["REPORT_LOG"], "a") as f:
        f.write(json.dumps(seen) + "\\n")
    deadline = time.monotonic() + 20  # both init() before either runs: one could score all 6 items alone
    while len(Path(os.environ["REPORT_LOG"]).read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

def run(mini_batch):
    return mini_batch
"""


def test_worker_environment(job, tmp_path, monkeypatch):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv("REPORT_LOG", str(report))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("w=1")
    (tmp_path / "labels.csv").write_text("a,b\n")
    job.files(6)
    job.script(REPORT)
    summary = run_local(str(job.write(arguments=["--model_name", "iris"], model={"uri": "model/"},
                                      sideInputs=[{"name": "labels", "uri": "labels.csv"}],
                                      environment={"gpu": {"count": 2}}, loggingLevel="DEBUG")),
                        console=Console(file=io.StringIO()))
    seen = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(seen) == 2  # init() once per process
    for s in seen:
        assert s["argv"] == ["--model_name", "iris"]
        assert s["model"] == s["aml_model"] == str(tmp_path / "model") and s["model_file"] == "w=1"
        assert s["labels"] == str(tmp_path / "labels.csv")
    assert sorted(s["cuda"] for s in seen) == ["0", "1"]  # each worker its own GPU
    logs = "".join(p.read_text() for p in (tmp_path / "output").glob("_parallelrun/*/logs/*.log"))
    assert "debug from init" in logs and "info from init" in logs
    assert summary["logs"].endswith("/logs")


def test_gpu_assignment():
    assert gpu_assignment(2, 4) == ["0,1", "2,3"]
    assert gpu_assignment(4, 2) == ["0", "1", "0", "1"]
    assert gpu_assignment(2, 2, visible="GPU-a,GPU-b") == ["GPU-a", "GPU-b"]
    assert gpu_assignment(1, 3) == ["0,1,2"]
