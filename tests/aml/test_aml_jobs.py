"""Azure ML v2 parallel jobs, as AML documents them, run, validated and converted unchanged."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def sample(name, tmp_path) -> Path:
    """A copy of a sample folder: its outputs go beside it, as AML's relative paths say."""
    return Path(shutil.copytree(HERE / name, tmp_path / name))


def summary_of(output: Path) -> dict:
    [path] = output.glob("_parallelrun/*/summary.json")
    return json.loads(path.read_text())


def iris_expected(folder: Path) -> list[str]:
    import csv

    with open(folder / "iris-mltable" / "iris.csv") as f:
        return [f"{row['id']} {'setosa' if float(row['petal_length']) < 2.5 else 'other'}" for row in csv.DictReader(f)]


def test_iris_parallel_job_runs_unchanged(tmp_path):
    folder = sample("iris_parallel", tmp_path)
    proc = cli("run", folder / "job.yml")
    assert proc.returncode == 0, proc.stderr
    out = folder / "predictions" / "iris_predictions.csv"
    assert out.read_text().splitlines() == iris_expected(folder)  # AML's space-separated rows, in input order
    summary = summary_of(folder / "predictions")
    assert summary["items"] == {"succeeded": 300, "failed": 0}
    assert summary["thresholds"] == {"errorThreshold": 5, "miniBatchErrorThreshold": 5, "allowedFailedPercent": 30}
    assert proc.stderr.count("ignored compute:") == 1  # named once, not an error
    assert "ignored task.environment:" in proc.stderr


def test_partition_job_gets_mini_batch_context_and_aml_arguments(tmp_path):
    folder = sample("sales_partition", tmp_path)
    proc = cli("run", folder / "job.yml")
    assert proc.returncode == 0, proc.stderr
    rows = (folder / "summary" / "parallel_run_step.txt").read_text().splitlines()
    assert rows == [f"{s} {b} {s * 100 + 1.5}" for s in (1, 2, 3) for b in ("dominicks", "tropicana")]
    models = sorted(folder.glob("models/*/*/model.json"))
    assert [m.relative_to(folder / "models").parts[:2] for m in models] == [
        (str(s), b) for s in (1, 2, 3) for b in ("dominicks", "tropicana")]
    seen = [json.loads(m.read_text()) for m in models]
    assert sorted(m["index"] for m in seen) == list(range(6))  # minibatch_index: plan order
    assert {m["logging_level"] for m in seen} == {"INFO"} and {m["partition_keys"] for m in seen} == {"Store,Brand"}


def test_convert_prints_the_job_it_runs_as(tmp_path):
    folder = sample("iris_parallel", tmp_path)
    proc = cli("convert", folder / "job.yml")
    assert proc.returncode == 0, proc.stderr
    converted = folder / "converted.yaml"
    converted.write_text(proc.stdout)
    resource = yaml.safe_load(proc.stdout)
    assert resource["kind"] == "BatchInferenceJob"
    spec = resource["spec"]
    assert spec["input"] == {"type": "tabular", "uri": "iris-mltable/iris.csv", "format": "csv",
                             "options": {"delimiter": ",", "encoding": "ascii"}}
    assert (spec["nodeCount"], spec["processCountPerNode"], spec["runMaxTry"], spec["runInvocationTimeout"]) == \
        (2, 2, 3, 60)  # retries are attempts minus one
    assert spec["environment"] == {"env": [{"name": "AZUREML_PARALLEL_EXAMPLE", "value": "iris_yaml"}]}
    assert spec["output"] == {"uri": "./predictions/", "fileName": "iris_predictions.csv", "format": "txt"}
    assert cli("validate", converted).returncode == 0
    ran = cli("run", converted)
    assert ran.returncode == 0, ran.stderr
    assert (folder / "predictions" / "iris_predictions.csv").read_text().splitlines() == iris_expected(folder)


def test_validate_names_what_cannot_be_converted(tmp_path):
    folder = sample("iris_parallel", tmp_path)
    doc = yaml.safe_load((folder / "job.yml").read_text())
    doc["inputs"]["input_data"]["path"] = "azureml:iris-data:1"
    doc["retry_settings"]["max_retries"] = -1
    doc["task"]["entry_scrpt"] = doc["task"].pop("entry_script")
    (folder / "bad.yml").write_text(yaml.safe_dump(doc))
    proc = cli("validate", folder / "bad.yml")
    assert proc.returncode == 2
    assert "inputs.input_data.path: 'azureml:iris-data:1' is an Azure ML data asset; give a local path" in proc.stderr
    assert "retry_settings.max_retries: -1 is not a count" in proc.stderr
    assert "task.entry_scrpt: unknown field" in proc.stderr
    assert "task.entry_script: required" in proc.stderr


def test_validate_checks_the_converted_job_files(tmp_path):
    folder = sample("iris_parallel", tmp_path)
    shutil.rmtree(folder / "script")
    proc = cli("validate", folder / "job.yml")
    assert proc.returncode == 2 and "iris_prediction.py" in proc.stderr


PIPELINE = """
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: iris-batch-prediction-using-parallel
settings:
  default_compute: azureml:cpu-cluster
inputs:
  pipeline_data:
    type: mltable
    path: ./iris_parallel/iris-mltable
jobs:
  batch_prediction:
    type: parallel
    compute: azureml:cpu-cluster
    inputs:
      input_data: ${{parent.inputs.pipeline_data}}
      score_model:
        type: uri_folder
        path: ./iris_parallel/iris-model
    outputs:
      job_output_file:
        type: uri_file
        mode: rw_mount
    input_data: ${{inputs.input_data}}
    mini_batch_size: "2kb"
    max_concurrency_per_instance: 2
    environment_variables:
      AZUREML_PARALLEL_EXAMPLE: iris_yaml
    task:
      type: run_function
      code: ./iris_parallel/script
      entry_script: iris_prediction.py
      program_arguments: --model ${{inputs.score_model}}
      append_row_to: ${{outputs.job_output_file}}
  count_lines:
    type: parallel
    inputs:
      predictions:
        type: uri_folder
        path: ${{parent.jobs.batch_prediction.outputs.job_output_file}}
    outputs:
      counts: {}
    input_data: ${{inputs.predictions}}
    mini_batch_size: "1"
    task:
      code: ./count
      entry_script: count.py
      append_row_to: ${{outputs.counts}}
"""


def test_pipeline_parallel_jobs_become_pipeline_steps(tmp_path):
    sample("iris_parallel", tmp_path)
    (tmp_path / "count").mkdir()
    (tmp_path / "count" / "count.py").write_text(
        "import os\n\ndef run(mini_batch):\n"
        "    return [f'{os.path.basename(p)} {len(open(p).read().splitlines())}' for p in mini_batch]\n")
    (tmp_path / "pipeline.yml").write_text(PIPELINE)
    converted = cli("convert", tmp_path / "pipeline.yml")
    assert converted.returncode == 0, converted.stderr
    resource = yaml.safe_load(converted.stdout)
    assert resource["kind"] == "PipelineRun"
    assert [s["name"] for s in resource["spec"]["steps"]] == ["batch-prediction", "count-lines"]
    second = resource["spec"]["steps"][1]["batchInference"]
    assert second["input"] == {"uri": "${{steps.batch-prediction.outputs.outputFile}}", "type": "files"}
    proc = cli("run", tmp_path / "pipeline.yml")
    assert proc.returncode == 0, proc.stderr
    [predictions] = tmp_path.glob("outputs/*/batch-prediction/job_output_file/parallel_run_step.txt")
    assert predictions.read_text().splitlines() == iris_expected(tmp_path / "iris_parallel")
    [counts] = tmp_path.glob("outputs/*/count-lines/counts/parallel_run_step.txt")
    assert counts.read_text().splitlines() == ["parallel_run_step.txt 300"]


def test_pipeline_command_jobs_are_named_not_dropped(tmp_path):
    (tmp_path / "pipeline.yml").write_text(yaml.safe_dump({
        "type": "pipeline", "jobs": {"prep": {"type": "command", "command": "python prep.py"}}}))
    proc = cli("validate", tmp_path / "pipeline.yml")
    assert proc.returncode == 2
    assert "jobs.prep.type: 'command' jobs are not converted" in proc.stderr


COMPONENT = """
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: prepare_numbers
display_name: Prepare numbers
version: 1
inputs:
  count: {type: integer, default: 3}
outputs:
  numbers: {type: uri_folder}
code: ./src
environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
command: >-
  python prepare.py --count ${{inputs.count}} --out ${{outputs.numbers}}
"""

PREPARE = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--count", type=int)
parser.add_argument("--out")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
for i in range(args.count):
    open(os.path.join(args.out, f"n_{i}.txt"), "w").write(str(i * i))
"""

COMMAND_PIPELINE = """
type: pipeline
display_name: numbers
inputs:
  how_many: 4
jobs:
  prepare:
    type: command
    component: ./prepare/component.yml
    compute: azureml:cpu-cluster
    inputs:
      count: ${{parent.inputs.how_many}}
    outputs:
      numbers:
        mode: rw_mount
  score:
    type: parallel
    inputs:
      numbers:
        type: uri_folder
        path: ${{parent.jobs.prepare.outputs.numbers}}
    outputs:
      result: {type: uri_file}
    input_data: ${{inputs.numbers}}
    mini_batch_size: "2"
    task:
      code: ./count
      entry_script: count.py
      append_row_to: ${{outputs.result}}
"""


def test_pipeline_command_component_jobs_become_component_steps(tmp_path):
    (tmp_path / "prepare" / "src").mkdir(parents=True)
    (tmp_path / "prepare" / "component.yml").write_text(COMPONENT)
    (tmp_path / "prepare" / "src" / "prepare.py").write_text(PREPARE)
    (tmp_path / "count").mkdir()
    (tmp_path / "count" / "count.py").write_text(
        "import os\n\ndef run(mini_batch):\n    return [f'{os.path.basename(p)} {open(p).read()}' for p in mini_batch]\n")
    (tmp_path / "pipeline.yml").write_text(COMMAND_PIPELINE)
    converted = cli("convert", tmp_path / "pipeline.yml")
    assert converted.returncode == 0, converted.stderr
    steps = yaml.safe_load(converted.stdout)["spec"]["steps"]
    assert steps[0] == {"name": "prepare", "component": {"uri": "./prepare/component.yml"}, "inputs": {"count": 4}}
    assert steps[1]["batchInference"]["input"]["uri"] == "${{steps.prepare.outputs.numbers}}"
    proc = cli("run", tmp_path / "pipeline.yml")
    assert proc.returncode == 0, proc.stderr
    [result] = tmp_path.glob("outputs/*/score/result/parallel_run_step.txt")
    assert result.read_text().splitlines() == [f"n_{i}.txt {i * i}" for i in range(4)]
