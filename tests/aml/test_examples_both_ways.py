"""The iris and digits examples run both ways: as BatchInferenceJobs and as the Azure ML v2
parallel jobs beside them, the same scoring script giving the same predictions."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def sh(*args):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def prepared(name, tmp_path, *extra) -> Path:
    folder = Path(shutil.copytree(EXAMPLES / name, tmp_path / name))
    sh(folder / "prepare.py", "--data-dir", folder / "data", "--model-dir", folder / "model", *extra)
    return folder


def summary_of(output: Path) -> dict:
    [path] = output.glob("_parallelrun/*/summary.json")
    return json.loads(path.read_text())


def test_iris_both_ways(tmp_path):
    folder = prepared("iris", tmp_path, "--rows", "20000", "--files", "2")
    sh("-m", "parallelrun.cli", "run", folder / "job.yaml")
    sh("-m", "parallelrun.cli", "run", folder / "aml-job.yml")
    ours = pd.read_csv(folder / "output" / "iris_predictions.csv")
    aml = (folder / "output-aml" / "iris_predictions.txt").read_text().splitlines()
    assert len(aml) == len(ours) == 20000
    assert [line.rsplit(" ", 1)[1] for line in aml] == ours["Prediction"].tolist()
    assert summary_of(folder / "output-aml")["items"] == {"succeeded": 20000, "failed": 0}


def test_digits_both_ways(tmp_path):
    folder = prepared("digits", tmp_path)
    sh("-m", "parallelrun.cli", "run", folder / "job.yaml")
    sh("-m", "parallelrun.cli", "run", folder / "aml-job.yml")
    ours = (folder / "output" / "parallel_run_step.txt").read_bytes()
    assert (folder / "output-aml" / "parallel_run_step.txt").read_bytes() == ours
    assert summary_of(folder / "output-aml")["items"] == {"succeeded": 1797, "failed": 3}
