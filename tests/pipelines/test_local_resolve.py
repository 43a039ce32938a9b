"""Resolving a step: expressions, outputs, quoting, the JSON form and the fingerprint (pure)."""

import dataclasses
import json
import shlex
import subprocess

import pytest

from parallelrun.runner.pipelines.component import Component, Input
from parallelrun.runner.pipelines.resolve import (
    ResolvedStep,
    ResolveError,
    component_base_dir,
    component_outputs,
    resolve_step,
)
from parallelrun.runner.pipelines.spec import ComponentRef, PipelineSpecError, load_pipeline

TRAIN = Component("train_iris", "1.2", "command",
                  inputs={"data": Input("uri_folder"), "max_iter": Input("integer", 100),
                          "note": Input("string", optional=True)},
                  outputs={"model": "uri_folder", "report": "uri_file"},
                  command="python train.py --data ${{inputs.data}} --iter ${{inputs.max_iter}} "
                          "--note ${{inputs.note}} --out ${{outputs.model}} --report ${{outputs.report}}",
                  image="reg/train:1", code="az://components/train/src")
PARALLEL = Component("score_images", "1", "parallel", inputs={"images": Input("uri_folder")},
                     outputs={"model": "uri_folder"},  # the name the pipeline below reads
                     batch_inference={"input": {"uri": "${{inputs.images}}", "type": "files"},
                                      "code": {"uri": "./src", "entryScript": "score.py"},
                                      "output": {"uri": "${{outputs.model}}"},
                                      "environment": {"image": "reg/score:2"}})


def pipeline(name="nightly", workdir="az://work/", parameters=None, component=TRAIN, inputs=None):
    doc = {"apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": name},
           "spec": {
               "workdir": workdir, "storage": {"secretRef": {"name": "blob"}},
               "parameters": {"maxIter": {"type": "integer", "default": 500},
                              "label": {"type": "string", "default": "it's $(rm -rf /); ok"}},
               "steps": [
                   {"name": "train", "component": {"uri": "az://components/train/component.yaml"},
                    "inputs": inputs or {"data": "az://data/train/", "max_iter": "${{parameters.maxIter}}"}},
                   {"name": "score", "batchInference": {
                       "input": {"uri": "az://data/iris/", "type": "tabular", "format": "parquet"},
                       "model": {"uri": "${{steps.train.outputs.model}}"},
                       "code": {"configMap": "iris-code", "entryScript": "score.py"},
                       "output": {"uri": "${{run.workdir}}/score/", "format": "csv",
                                  "fileName": "iris_${{parameters.maxIter}}.csv"}}},
                   {"name": "publish", "container": {
                       "image": "reg/publish:1", "command": ["python", "publish.py"],
                       "args": ["${{steps.score.outputs.outputFile}}", "--n", "${{parameters.maxIter}}"],
                       "env": [{"name": "A", "value": "1"}]}},
               ],
               "finally": [{"name": "notify", "container": {"command": ["echo", "${{run.status}}"]}}]}}
    return load_pipeline(doc, base_dir="/pipelines", parameters=parameters or {}, components=lambda ref: component)


def step(spec, name):
    return next(s for s in spec.steps + spec.finally_steps if s.name == name)


def test_component_outputs_are_placed_under_the_run_workdir():
    assert component_outputs("az://work/nightly/", "train", {"model": "uri_folder", "report": "uri_file"}) == {
        "model": "az://work/nightly/train/model/", "report": "az://work/nightly/train/report"}


def test_a_component_step_resolves_with_defaults_and_quoted_values():
    spec = pipeline()
    train = resolve_step(spec, step(spec, "train"), {})
    assert (train.kind, train.image, train.code, train.storage) == (
        "component", "reg/train:1", "az://components/train/src", {"secretRef": {"name": "blob"}})
    assert train.inputs == {"data": "az://data/train/", "max_iter": 500}
    assert train.outputs == {"model": "az://work/nightly/train/model/", "report": "az://work/nightly/train/report"}
    assert train.component == {"name": "train_iris", "version": "1.2"}
    argv = train.render()
    assert argv[:2] == ["sh", "-c"]
    assert shlex.split(argv[2]) == ["python", "train.py", "--data", "az://data/train/", "--iter", "500", "--note", "",
                                    "--out", "az://work/nightly/train/model/", "--report",
                                    "az://work/nightly/train/report"]
    local = train.render({"data": "/tmp/in dir/", "max_iter": 500}, {"model": "/tmp/o'ut/", "report": "/tmp/r"})
    assert shlex.split(local[2])[3] == "/tmp/in dir/" and shlex.split(local[2])[9] == "/tmp/o'ut/"


def test_a_value_is_never_shell_code(tmp_path):
    hostile = Component("c", "1", "command", inputs={"text": Input("string")}, outputs={"model": "uri_folder"},
                        command="printf '%s' ${{inputs.text}} > out.txt")
    spec = pipeline(component=hostile, inputs={"text": "${{parameters.label}}"})
    argv = resolve_step(spec, step(spec, "train"), {}).render()
    subprocess.run(argv, cwd=tmp_path, check=True)
    assert (tmp_path / "out.txt").read_text() == "it's $(rm -rf /); ok"


def test_a_batch_inference_step_is_normalized_with_its_outputs():
    spec = pipeline()
    score = resolve_step(spec, step(spec, "score"), {"train": {"model": "az://old/train/model/"}})
    assert score.kind == "batchInference" and score.command is None
    assert score.job["model"] == {"uri": "az://old/train/model/"}
    assert score.job["output"]["fileName"] == "iris_500.csv"
    assert score.job["storage"] == {"secretRef": {"name": "blob"}}  # the pipeline's default
    assert score.outputs == {"output": "az://work/nightly/score/",
                             "outputFile": "az://work/nightly/score/iris_500.csv"}
    with pytest.raises(ValueError, match="runs a BatchInferenceJob"):
        score.render()


def test_a_container_step_keeps_its_arguments_as_they_are():
    spec = pipeline()
    publish = resolve_step(spec, step(spec, "publish"), {"score": {"output": "o/", "outputFile": "o/f.csv"}})
    assert publish.render() == ["python", "publish.py", "o/f.csv", "--n", "500"]
    assert (publish.image, publish.env, publish.cwd, publish.outputs) == (
        "reg/publish:1", [{"name": "A", "value": "1"}], "/pipelines", {})
    notify = resolve_step(spec, step(spec, "notify"), {}, run_status="Failed")
    assert notify.render() == ["echo", "Failed"]


def test_what_has_no_value_yet_is_one_error_each():
    spec = pipeline()
    with pytest.raises(ResolveError) as caught:
        resolve_step(spec, step(spec, "score"), {})
    assert caught.value.errors == ["steps.score.batchInference.model.uri: ${{steps.train.outputs.model}} has no "
                                   "value: that step did not succeed, so its outputs do not exist"]
    with pytest.raises(PipelineSpecError, match="set by a PipelineSchedule when it creates the run"):
        pipeline(inputs={"data": "az://in/${{schedule.scheduledTime}}/"})


def test_a_parallel_component_becomes_a_job_with_its_declared_outputs():
    spec = pipeline(component=PARALLEL, inputs={"images": "az://images/"})
    scoring = resolve_step(spec, step(spec, "train"), {})
    assert scoring.kind == "batchInference" and scoring.image == "reg/score:2"
    assert scoring.job["input"]["uri"] == "az://images/"
    assert scoring.job["code"]["uri"] == "az://components/train/src"  # relative to the component file
    assert scoring.job["output"]["uri"] == scoring.outputs["model"] == "az://work/nightly/train/model/"
    later = pipeline(name="nightly-2", component=PARALLEL, inputs={"images": "az://images/"})
    assert resolve_step(later, step(later, "train"), {}).fingerprint == scoring.fingerprint


def test_the_json_form_round_trips_and_refuses_other_formats():
    spec = pipeline()
    train = resolve_step(spec, step(spec, "train"), {})
    data = json.loads(json.dumps(train.to_dict()))
    assert data["format"] == 1 and data["outputTypes"] == {"model": "uri_folder", "report": "uri_file"}
    assert ResolvedStep.from_dict(data) == train
    with pytest.raises(ResolveError, match="format: 2"):
        ResolvedStep.from_dict({**data, "format": 2})
    with pytest.raises(ResolveError, match="colour: unknown field"):
        ResolvedStep.from_dict({**data, "colour": "red"})


def test_the_fingerprint_follows_what_the_step_produces_not_where_the_run_is():
    def print_of(**kwargs):
        spec = pipeline(**{k: v for k, v in kwargs.items() if k in ("name", "parameters")})
        return resolve_step(spec, step(spec, "train"), {}, component_text=kwargs.get("text", b"v1"),
                            code_digest=lambda uri: kwargs.get("code", "c1") if uri.endswith("/src") else None).fingerprint

    base = print_of()
    assert print_of(name="another-run") == base  # the default output places are not fingerprinted
    assert print_of(parameters={"maxIter": "501"}) != base
    assert print_of(text=b"v2") != base
    assert print_of(code="c2") != base


def test_a_component_must_be_loaded_and_its_inputs_typed():
    spec = load_pipeline({"workdir": "w/", "steps": [{"name": "t", "component": {"uri": "c.yaml"},
                                                      "inputs": {"data": "d/", "max_iter": "${{run.name}}"}}]})
    with pytest.raises(ResolveError, match="the component is not loaded"):
        resolve_step(spec, spec.steps[0], {})
    loaded = dataclasses.replace(spec.steps[0], component=TRAIN)
    with pytest.raises(ResolveError, match=r"^invalid step:\n  steps.t.inputs.max_iter: expected an integer, got 'pipeline'$"):
        resolve_step(spec, loaded, {})


def test_relative_uris_in_a_component_file_are_relative_to_it():
    assert component_base_dir(ComponentRef(config_map="train", key="component.yaml")) is None
    assert component_base_dir(ComponentRef(uri="az://c/train/1/component.yaml")) == "az://c/train/1"
    assert component_base_dir(ComponentRef(uri="/x/c/component.yaml")) == "/x/c"


def test_a_relative_uri_input_is_relative_to_the_pipeline_file():
    spec = pipeline(inputs={"data": "data/train/", "max_iter": 3})
    train = resolve_step(spec, step(spec, "train"), {})
    assert train.inputs == {"data": "/pipelines/data/train/", "max_iter": 3}

