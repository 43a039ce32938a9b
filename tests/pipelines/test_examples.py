"""The example pipelines and components: they load, and run end to end as a user runs them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from crd_validation import CustomResourceValidator

from parallelrun.runner.pipelines.component import Component, load_component_text
from parallelrun.runner.pipelines.spec import ComponentRef, load_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PIPELINE = EXAMPLES / "pipelines" / "iris" / "pipeline.yaml"
COMPONENT = EXAMPLES / "components" / "train-iris" / "component.yaml"


def read_component(ref: ComponentRef) -> Component:
    path = Path(ref.uri)
    return load_component_text(path.read_bytes(), base_dir=str(path.parent))


def test_the_train_component_loads():
    component = read_component(ComponentRef(uri=str(COMPONENT)))
    assert (component.name, component.version, component.type) == ("train_iris", "1.2", "command")
    assert {name: (i.type, i.default) for name, i in component.inputs.items()} == {
        "max_iter": ("integer", 1000), "regularization": ("number", 1.0)}
    assert component.outputs == {"model": "uri_folder"}
    assert component.command[:2] == ("python", "-c")


def test_the_iris_pipeline_loads_with_its_component():
    spec = load_pipeline(yaml.safe_load(PIPELINE.read_text()), base_dir=str(PIPELINE.parent),
                         parameters={"scoringDate": "2025-01-31"}, components=read_component)
    assert spec.name == "iris-daily"
    assert spec.run_workdir == str(PIPELINE.parent / "work" / "iris-daily")
    assert spec.parameters == {"rows": 10000, "maxIter": 1000, "scoringDate": "2025-01-31"}
    assert [(s.name, s.kind, s.needs) for s in spec.steps + spec.finally_steps] == [
        ("prepare", "component", ()), ("train", "component", ()), ("score", "batchInference", ("prepare", "train")),
        ("publish", "component", ("score",)), ("notify", "container", ())]
    assert spec.steps[1].component_ref == ComponentRef(uri=str(COMPONENT))
    assert spec.steps[1].component.outputs == {"model": "uri_folder"}


# -- the example pipelines, run as a user would, on a copy of examples/ --------------------


def copy_examples(tmp_path: Path) -> Path:
    """examples/ without what running them leaves (data, models, outputs), under tmp_path."""
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns(
        "data", "model", "output", "work", "published", "__pycache__"))
    return target


def run(pipeline: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(pipeline), *args],
                          capture_output=True, text=True, timeout=280, cwd=pipeline.parent)


def step_lines(result: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line[5:].split(": ", 1) for line in result.stderr.splitlines()
                if line.startswith("step ") and ": " in line and not line.startswith("step logs:"))


def validate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", "validate", *args],
                          capture_output=True, text=True, timeout=60)


def test_every_example_pipeline_and_component_validates():
    local = sorted((EXAMPLES / "pipelines").glob("*/pipeline.yaml"))
    components = sorted((EXAMPLES / "components").glob("*/component.yaml"))
    assert len(local) == 3 and len(components) == 6
    result = validate(*map(str, local + components))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("its components are valid") == 3
    on_a_cluster = sorted((EXAMPLES / "pipelines").glob("*/pipeline-azure.yaml"))  # components on az://: unread
    result = validate("--no-check", *map(str, on_a_cluster))
    assert result.returncode == 0 and result.stdout.count("valid PipelineRun") == 3, result.stderr


def test_every_example_pipeline_is_valid_against_the_crd():
    validator = CustomResourceValidator([yaml.safe_load((EXAMPLES.parent / "crds" / "pipelineruns.yaml").read_text())])
    for path in sorted((EXAMPLES / "pipelines").glob("*/pipeline*.yaml")):
        assert [str(v) for v in validator.validate(yaml.safe_load(path.read_text()))] == [], path


@pytest.mark.slow
def test_the_iris_pipeline_publishes_a_dated_csv_with_headers(tmp_path):
    folder = copy_examples(tmp_path) / "pipelines" / "iris"
    result = run(folder / "pipeline.yaml", "--set", "parameters.scoringDate=2025-01-31", "--set", "parameters.rows=3000")
    assert result.returncode == 0, result.stderr
    published = pd.read_csv(folder / "work" / "iris-daily" / "publish" / "published" / "iris_2025-01-31.csv")
    assert list(published.columns) == ["sepal_length", "sepal_width", "petal_length", "petal_width", "Prediction"]
    assert len(published) == 3000
    assert "pipeline iris-daily: Succeeded" in (folder / "work" / "iris-daily" / "_parallelrun" / "logs"
                                                 / "notify.log").read_text()


@pytest.mark.slow
def test_the_retrain_pipeline_registers_versions_and_reuses_training(tmp_path):
    folder = copy_examples(tmp_path) / "pipelines" / "retrain"
    first = run(folder / "pipeline.yaml", "--set", "parameters.rows=2000")
    assert first.returncode == 0, first.stderr
    models = folder / "work" / "iris-retrain" / "models" / "iris"
    assert (models / "latest").read_text() == "1" and (models / "1" / "model.joblib").is_file()
    assert set(step_lines(first)) == {"train", "register", "data", "score"}
    assert len(pd.read_csv(folder / "work" / "iris-retrain" / "score" / "predictions.csv")) == 2000
    second = run(folder / "pipeline.yaml", "--set", "parameters.rows=2000", "--set", "parameters.modelVersion=2")
    assert second.returncode == 0, second.stderr
    lines = step_lines(second)
    assert lines["train"].startswith("Reused") and lines["data"].startswith("Reused")
    assert lines["register"].startswith("Succeeded") and lines["score"].startswith("Succeeded")
    assert (models / "latest").read_text() == "2"
    assert (models / "2" / "model.joblib").read_bytes() == (models / "1" / "model.joblib").read_bytes()
    retrained = run(folder / "pipeline.yaml", "--set", "parameters.rows=2000", "--set", "parameters.maxIter=50")
    assert retrained.returncode == 1  # other files under version 1: versions are immutable
    assert "iris version 1 exists with another model" in step_lines(retrained)["register"]
    assert (models / "latest").read_text() == "2"


@pytest.mark.slow
def test_the_digits_pipeline_runs_a_parallel_component(tmp_path):
    folder = copy_examples(tmp_path) / "pipelines" / "digits"
    result = run(folder / "pipeline.yaml")
    assert result.returncode == 0, result.stderr
    predictions = folder / "work" / "digits" / "score" / "predictions" / "parallel_run_step.txt"
    assert len(predictions.read_text().splitlines()) == 1797
    assert "1797 images classified" in (folder / "work" / "digits" / "_parallelrun" / "logs" / "count.log").read_text()
