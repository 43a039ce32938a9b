"""Components: the Azure ML v2 command component shape, parallel components, input type checks."""

import pytest
import yaml

from parallelrun.runner.pipelines.component import (
    Component,
    ComponentError,
    Input,
    check_inputs,
    load_component,
    load_component_text,
)

TRAIN = """
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
kind: Component
type: command
name: train_iris
display_name: Train iris
version: "1.2"
description: Fit the iris classifier.
tags: {team: ml}
environment: {image: registry.example/trainer:1.0}
code: ./src
inputs:
  data: {type: uri_folder}
  max_iter: {type: integer, default: 500}
  ratio: {type: number, default: 0.5}
  verbose: {type: boolean, optional: true}
  label: {type: string, default: species, description: The label column.}
outputs:
  model: {type: uri_folder, description: The model folder.}
command: >-
  python train.py --data ${{inputs.data}} --max-iter ${{inputs.max_iter}} --out ${{outputs.model}}
"""

SCORE = {
    "kind": "Component", "type": "parallel", "name": "score_iris", "version": 3,
    "inputs": {"data": {"type": "uri_folder"}, "nodes": {"type": "integer"}, "fmt": {"type": "string", "default": "csv"}},
    "outputs": {"scores": {"type": "uri_folder"}},
    "batchInference": {
        "input": {"uri": "${{inputs.data}}", "type": "tabular", "format": "parquet"},
        "code": {"uri": "code/", "entryScript": "score.py"},
        "output": {"uri": "${{outputs.scores}}", "format": "${{inputs.fmt}}"},
        "nodeCount": "${{inputs.nodes}}",
    },
}


def errors_of(doc, base_dir=None) -> list[str]:
    with pytest.raises(ComponentError) as caught:
        load_component(doc, base_dir)
    return caught.value.errors


def test_an_azure_ml_command_component_loads():
    component = load_component_text(TRAIN, base_dir="/components/train-iris/1.2")
    assert component == Component(
        name="train_iris", version="1.2", type="command",
        inputs={"data": Input("uri_folder"), "max_iter": Input("integer", 500), "ratio": Input("number", 0.5),
                "verbose": Input("boolean", optional=True), "label": Input("string", "species")},
        outputs={"model": "uri_folder"},
        command="python train.py --data ${{inputs.data}} --max-iter ${{inputs.max_iter}} --out ${{outputs.model}}",
        image="registry.example/trainer:1.0", code="/components/train-iris/1.2/src", description="Fit the iris classifier.",
    )
    assert [name for name, i in component.inputs.items() if i.required] == ["data"]


@pytest.mark.parametrize(("base_dir", "code", "expected"), [
    ("az://components/train-iris/1.2", {"uri": "./src/"}, "az://components/train-iris/1.2/src/"),
    ("az://components/train-iris/1.2", {"uri": "../shared"}, "az://components/train-iris/shared"),
    ("/c/train", {"uri": "s3://bucket/code"}, "s3://bucket/code"),
    (None, {"uri": "src"}, "src"),
])
def test_code_is_relative_to_the_component_file(base_dir, code, expected):
    doc = {"name": "t", "version": "1", "command": ["true"], "code": code}
    assert load_component(doc, base_dir).code == expected


def test_a_list_command_is_kept_as_arguments():
    component = load_component({"name": "t", "version": 2, "command": ["python", "-c", "print(1)", "${{inputs.x}}"],
                                "inputs": {"x": {"type": "string"}}})
    assert component.command == ("python", "-c", "print(1)", "${{inputs.x}}") and component.version == "2"


def test_an_azure_ml_environment_is_this_one_here():
    """AML's environment forms: an azureml: reference, or an image with its conda file and name."""
    base = {"name": "prep", "version": "1", "command": "python prep.py", "code": "./src"}
    for environment, image in (("azureml:AzureML-sklearn-1.0@latest", None),
                               ({"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04",
                                 "conda_file": "conda.yml", "name": "prs-env", "version": 1},
                                "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04")):
        component = load_component_text(yaml.safe_dump({**base, "environment": environment}).encode(), base_dir="/c")
        assert component.image == image


def test_every_problem_is_reported_at_once():
    doc = {
        "kind": "Pipeline", "name": "train iris", "version": 1.10, "colour": "blue",
        "environment": "sklearn@latest", "code": {"path": "src"},
        "inputs": {"data": {"type": "mltable"}, "n": {"type": "integer", "default": "ten", "optional": "no"},
                   "2fast": {"type": "string"}, "x": "string"},
        "outputs": {"model": {"type": "mlflow_model"}, "log": "uri_file"},
        "command": "python train.py ${{inputs.nn}} ${{outputs.model}} ${{parameters.maxIter}} ${{steps.a.outputs.b}}",
    }
    assert errors_of(doc) == [
        "colour: unknown field; known fields: $schema, apiVersion, kind, type, name, version, display_name, "
        "description, tags, environment, code, inputs, outputs, command, batchInference",
        "kind: 'Pipeline' is not Component",
        "name: 'train iris' is not a component name; use letters, digits, '_', '-' and '.', e.g. train_iris",
        'version: 1.1 reads as a number; quote it, e.g. "1.1", so that 1.10 stays 1.10',
        "inputs.2fast: not a name; use a letter or _ followed by letters, digits or _",
        "inputs.data.type: 'mltable' is not one of uri_folder, uri_file, string, integer, number, boolean",
        "inputs.n.default: expected an integer, got 'ten'",
        "inputs.n.optional: expected true or false, got 'no'",
        "inputs.x: expected {type: ..., default: ...}, got 'string'",
        "outputs.model.type: 'mlflow_model' is not one of uri_folder, uri_file",
        "outputs.log: expected {type: uri_folder|uri_file, description: ...}, got 'uri_file'",
        "command: ${{inputs.nn}} names no input; did you mean n?",
        "command: ${{parameters.maxIter}}: a component sees only its inputs and outputs; declare an input and "
        "pass the value to it from the pipeline step",
        "command: ${{steps.a.outputs.b}}: a component sees only its inputs and outputs; declare an input and "
        "pass the value to it from the pipeline step",
        "environment: expected {image: <container image>}, got 'sklearn@latest'",
        "code: expected {uri: <folder>}, relative to the component file or a URL",
    ]


def test_required_fields():
    assert errors_of({}) == [
        "name: None is not a component name; use letters, digits, '_', '-' and '.', e.g. train_iris",
        "version: required: a version such as \"1.2\", got None",
        "command: required: a command line (run by sh -c) or a list of arguments, all strings",
    ]
    assert errors_of({"name": "t", "version": "1", "command": ["python", 3]}) == [
        "command: required: a command line (run by sh -c) or a list of arguments, all strings"]


def test_a_parallel_component_wraps_a_batch_inference_job_spec():
    component = load_component(SCORE, base_dir="/components/score")
    assert component.type == "parallel" and component.command is None
    assert component.batch_inference == SCORE["batchInference"], "kept as written, resolved when the step starts"
    assert component.version == "3"


def test_a_parallel_component_spec_is_checked_with_its_inputs_standing_in():
    doc = {**SCORE, "command": "python x.py", "inputs": {**SCORE["inputs"], "fmt": {"type": "string", "default": "xml"}},
           "batchInference": {**SCORE["batchInference"], "runMaxTry": 0, "partitionKeys": ["${{inputs.key}}"]}}
    assert errors_of(doc) == [
        "command: a parallel component runs its batchInference spec; remove command",
        "batchInference.output.format: 'xml' is not one of txt, csv, parquet, jsonl",
        "batchInference.runMaxTry: 0 is below the minimum 1",
        "batchInference.partitionKeys[0]: ${{inputs.key}} names no input; declare it under inputs "
        "(known: data, nodes, fmt)",
    ]
    assert errors_of({"name": "p", "version": "1", "type": "parallel"}) == [
        "batchInference: required with type: parallel; give a BatchInferenceJob spec"]
    assert errors_of({"name": "p", "version": "1", "command": "x", "batchInference": SCORE["batchInference"]}) == [
        "batchInference: only a type: parallel component has one; remove it or set type: parallel"]


def test_inputs_are_type_checked_all_at_once():
    component = load_component_text(TRAIN)
    assert check_inputs(component, {"data": "az://d/", "max_iter": 10, "verbose": False}) == []
    assert check_inputs(component, {"max_iter": "10", "ratio": True, "verbose": "yes", "label": 3, "epochs": 5}) == [
        "inputs.max_iter: expected an integer, got '10'",
        "inputs.ratio: expected a number, got True",
        "inputs.verbose: expected true or false, got 'yes'",
        "inputs.label: expected a string, got 3",
        "inputs.epochs: component train_iris 1.2 has no such input; its inputs: data, max_iter, ratio, verbose, label",
        "inputs.data: required by component train_iris 1.2; give a value (uri_folder)",
    ]


@pytest.mark.parametrize(("type_", "good", "bad"), [
    ("uri_folder", "az://x/", ""), ("uri_file", "a.csv", 3), ("string", "", None), ("integer", -3, 2.5),
    ("number", 2.5, "2.5"), ("number", 7, float("nan")), ("boolean", False, 0),
])
def test_input_types(type_, good, bad):
    component = Component("c", "1", "command", inputs={"x": Input(type_)})
    assert check_inputs(component, {"x": good}) == []
    assert len(check_inputs(component, {"x": bad})) == 1


def test_not_yaml():
    with pytest.raises(ComponentError) as caught:
        load_component_text("name: [unclosed")
    assert caught.value.errors[0].startswith("component: not valid YAML:")
    assert errors_of(["a list"]) == ["component: expected a mapping, got list"]
