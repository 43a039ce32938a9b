"""Both examples, prepared and run as a user would, into a temporary folder."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def sh(*args):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_example(name, tmp_path, *extra):
    sh(str(EXAMPLES / name / "prepare.py"), "--data-dir", str(tmp_path / "data"),
       "--model-dir", str(tmp_path / "model"), *extra)
    sh("-m", "parallelrun.cli", "run", str(EXAMPLES / name / "job.yaml"),
       "--set", f"input.uri={tmp_path}/data/", "--set", f"model.uri={tmp_path}/model/",
       "--set", f"output.uri={tmp_path}/output/")
    [summary] = (tmp_path / "output").glob("_parallelrun/*/summary.json")
    return json.loads(summary.read_text())


@pytest.mark.slow
def test_iris(tmp_path):
    summary = run_example("iris", tmp_path, "--rows", "700000", "--files", "2")
    assert summary["items"] == {"succeeded": 700000, "failed": 0}
    assert summary["miniBatches"]["total"] > 2  # split within files
    out = pd.read_csv(tmp_path / "output" / "iris_predictions.csv")
    source = pd.read_parquet(tmp_path / "data")
    assert len(out) == 700000 and set(out["Prediction"]) <= {"setosa", "versicolor", "virginica"}
    assert out["sepal_length"].tolist()[:1000] == source["sepal_length"].tolist()[:1000]
    assert (out["petal_length"] < 2.5).eq(out["Prediction"] == "setosa").mean() > 0.95


@pytest.mark.slow
def test_digits_counts_corrupt_images_as_failed_items(tmp_path):
    summary = run_example("digits", tmp_path)
    assert summary["status"] == "Succeeded"
    assert summary["items"] == {"succeeded": 1797, "failed": 3}
    lines = (tmp_path / "output" / "parallel_run_step.txt").read_text().splitlines()
    assert len(lines) == 1797 and lines[0] == "digit_00000.png: 0"
    from sklearn.datasets import load_digits

    truth = load_digits().target
    right = sum(line == f"digit_{i:05d}.png: {truth[i]}" for i, line in enumerate(lines))
    assert right / len(lines) > 0.95
