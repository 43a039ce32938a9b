"""Loading a PipelineRun: DESIGN.md's example, and every kind of mistake reported at once."""

from datetime import date

import pytest
import yaml

from parallelrun.runner.pipelines.component import Component, ComponentError, Input
from parallelrun.runner.pipelines.spec import ComponentRef, PipelineSpecError, load_pipeline

DESIGN_EXAMPLE = """
apiVersion: parallelrun.dev/v1alpha1
kind: PipelineRun
metadata: {name: iris-retrain}
spec:
  parameters:
    scoringDate: {type: string, default: "today"}
    maxIter:     {type: integer, default: 500}
  workdir: az://pipelines/iris/
  storage: {secretRef: {name: blob-creds}}
  steps:
  - name: train
    component: {uri: az://components/train-iris/1.2/component.yaml}
    inputs: {data: az://data/iris-train/, max_iter: "${{parameters.maxIter}}"}
  - name: score
    batchInference:
      input: {uri: az://data/iris/, type: tabular, format: parquet}
      model: {uri: "${{steps.train.outputs.model}}"}
      code: {configMap: iris-code, entryScript: score.py}
      output: {uri: "${{run.workdir}}/score/", format: csv, fileName: "iris_${{parameters.scoringDate}}.csv"}
  - name: publish
    dependsOn: [score]
    container: {image: registry.example/publish:1, command: [python, publish.py, "${{steps.score.outputs.output}}"]}
  finally:
  - name: notify
    container: {image: busybox:1.36, command: [sh, -c, "echo ${{run.status}}"]}
"""
TRAIN = Component("train_iris", "1.2", "command",
                  inputs={"data": Input("uri_folder"), "max_iter": Input("integer", 100)},
                  outputs={"model": "uri_folder"}, command=("python", "train.py"))


def run(*steps: dict, **spec) -> dict:
    return {"apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "nightly"},
            "spec": {"workdir": "az://work/", "steps": list(steps), **spec}}


def container(name: str, *command: str, **fields) -> dict:
    return {"name": name, "container": {"command": list(command) or ["true"]}, **fields}


def scoring(name: str, **spec) -> dict:
    job = {"input": {"uri": "az://data/", "type": "tabular", "format": "parquet"},
           "code": {"configMap": "code", "entryScript": "score.py"}, "output": {"uri": "az://out/"}}
    return {"name": name, "batchInference": {**job, **spec}}


def component(name: str, **fields) -> dict:
    return {"name": name, "component": {"uri": "az://components/train/component.yaml"}, **fields}


def errors_of(doc: dict, **options) -> list[str]:
    with pytest.raises(PipelineSpecError) as caught:
        load_pipeline(doc, **options)
    return caught.value.errors


def test_design_example_loads():
    spec = load_pipeline(yaml.safe_load(DESIGN_EXAMPLE))
    assert (spec.name, spec.workdir, spec.run_workdir) == ("iris-retrain", "az://pipelines/iris/",
                                                           "az://pipelines/iris/iris-retrain")
    assert spec.parameters == {"scoringDate": "today", "maxIter": 500}
    assert spec.storage == {"secretRef": {"name": "blob-creds"}}
    assert [(s.name, s.kind, s.needs, s.reuse) for s in spec.steps + spec.finally_steps] == [
        ("train", "component", (), True), ("score", "batchInference", ("train",), True),
        ("publish", "container", ("score",), True), ("notify", "container", (), False)]
    assert spec.steps[0].component_ref == ComponentRef(uri="az://components/train-iris/1.2/component.yaml")
    assert spec.steps[1].body["output"]["fileName"] == "iris_${{parameters.scoringDate}}.csv", "kept as written"
    assert spec.graph.steps == ("train", "score", "publish") and spec.graph.finally_steps == ("notify",)
    assert spec.values() == {"parameters.scoringDate": "today", "parameters.maxIter": 500,
                             "run.name": "iris-retrain", "run.workdir": "az://pipelines/iris/iris-retrain"}


def test_every_problem_is_reported_at_once():
    doc = run(
        container("prep", retries=-1, reuse="yes"),
        container("prep"),
        container("Score_1"),
        container("publish", "echo", "${{steps.prep.outputs.x}}", "${{run.status}}", "${{parameters.dayz}}",
                  dependsOn=["prep", "scor"]),
        scoring("score", nodeCount="${{parameters.day}}", runMaxTry="${{steps.score2.outputs.output}}"),
        parameters={"day": {"type": "string", "default": 1}, "maxIter": {"type": "integer", "value": 5.5},
                    "n": {"type": "integer", "default": 3}},
        **{"finally": [container("notify", dependsOn=["publish"]), container("prep")]},
    )
    assert errors_of(doc, parameters={"n": "three", "colour": "blue"}) == [
        "spec.parameters.day.default: expected a string, got 1",
        "spec.parameters.maxIter.value: expected an integer, got 5.5",
        "parameters.n: expected an integer, got 'three' for the integer parameter n",
        "parameters.colour: not a parameter of this pipeline; declare it under spec.parameters",
        "spec.steps[0].retries: expected an integer >= 0, got -1",
        "spec.steps[0].reuse: expected true or false, got 'yes'",
        "spec.steps[2].name: 'Score_1' is not a step name; use lower-case letters, digits and '-', starting and "
        "ending with a letter or digit, at most 63 (it names the child <run>-<step>)",
        "spec.steps[1].name: 'prep' is given twice",
        "spec.finally[1].name: 'prep' is given twice",
        "spec.steps[3].dependsOn[1]: 'scor' names no step; did you mean score?",
        "spec.steps[3].container.command[1]: ${{steps.prep.outputs.x}}: step prep has no outputs; only "
        "batchInference and component steps have outputs",
        "spec.steps[3].container.command[2]: ${{run.status}} is known only once the steps are over; use it in a "
        "step under spec.finally",
        "spec.steps[3].container.command[3]: ${{parameters.dayz}} names no parameter; did you mean day?",
        "spec.steps[4].batchInference.runMaxTry: ${{steps.score2.outputs.output}} names no step; did you mean score?",
        "spec.steps[4].batchInference.nodeCount: expected an integer >= 1, got '${{parameters.day}}'",
        "spec.steps[4].batchInference.runMaxTry: expected an integer >= 1, got '${{steps.score2.outputs.output}}'",
        "spec.finally[0].dependsOn[0]: publish is a regular step; finally steps start once every regular step is "
        "over, whatever happened, so remove it (use ${{run.status}} to see how the run went)",
    ]


def test_a_cycle_is_named_step_by_step():
    doc = run({**scoring("a"), "dependsOn": ["c"]},  # a waits for c, b uses a's output, c uses b's
              scoring("b", model={"uri": "${{steps.a.outputs.output}}"}),
              container("c", "${{steps.b.outputs.output}}"),
              container("d", dependsOn=["a"]))
    assert errors_of(doc) == ["spec.steps[0]: steps a → b → c → a form a cycle; break it: remove a dependsOn "
                              "entry or a ${{steps...}} reference"]


def test_each_cycle_is_named_once_and_a_step_may_not_wait_for_itself():
    doc = run(container("x", dependsOn=["x"]), container("a", dependsOn=["b"]), container("b", dependsOn=["a"]),
              **{"finally": [container("f", dependsOn=["g"]), container("g", dependsOn=["f"])]})
    assert [e.split(";")[0] for e in errors_of(doc)] == [
        "spec.steps[0]: steps x → x form a cycle", "spec.steps[1]: steps a → b → a form a cycle",
        "spec.finally[0]: steps f → g → f form a cycle"]


def test_needs_come_from_depends_on_and_references_in_spec_order():
    doc = run(scoring("a"), scoring("b"), container("c", "${{steps.b.outputs.output}}", "${{steps.a.outputs.output}}",
                                                    dependsOn=["b"]))
    assert load_pipeline(doc).steps[2].needs == ("a", "b")


def test_finally_steps_may_use_regular_outputs_and_wait_for_each_other():
    doc = run(scoring("score"), **{"finally": [
        container("report", "${{steps.score.outputs.outputFile}}", "${{run.status}}"),
        container("cleanup", dependsOn=["report"], reuse=True)]})
    spec = load_pipeline(doc)
    assert [(s.name, s.needs, s.reuse, s.is_finally) for s in spec.finally_steps] == [
        ("report", ("score",), False, True), ("cleanup", ("report",), True, True)]


def test_no_regular_step_waits_for_a_finally_step():
    doc = run(container("a", "${{steps.f.outputs.output}}", dependsOn=["f"]),
              **{"finally": [scoring("f")]})
    message = "f is a finally step; finally steps run after every other step, so no regular step can wait for one"
    assert errors_of(doc) == [f"spec.steps[0].dependsOn[0]: {message}",
                              f"spec.steps[0].container.command[0]: {message}"]


def test_parameter_values_given_then_value_then_default():
    doc = run(container("a", "${{parameters.day}}"), parameters={
        "day": {"type": "string", "default": "today", "value": "2025-01-01"},
        "iters": {"type": "integer", "default": 5}, "ratio": {"type": "number", "default": 1},
        "dry": {"type": "boolean", "default": True}})
    assert load_pipeline(doc).parameters == {"day": "2025-01-01", "iters": 5, "ratio": 1, "dry": True}
    given = {"day": date(2025, 1, 31), "iters": "600", "ratio": "0.25", "dry": "false"}  # as --set gives them
    assert load_pipeline(doc, parameters=given).parameters == {"day": "2025-01-31", "iters": 600, "ratio": 0.25,
                                                               "dry": False}


def test_parameter_declarations():
    doc = run(container("a"), parameters={"max-iter": {"type": "integer"}, "d": {"type": "date"},
                                          "e": "string", "f": {"type": "string", "defualt": "x"}})
    assert errors_of(doc, parameters={"e": "x"}) == [
        "spec.parameters.max-iter: not a parameter name; use a letter or _ followed by letters, digits or _",
        "spec.parameters.d.type: 'date' is not one of string, integer, number, boolean",
        "spec.parameters.e: expected {type: string|integer|number|boolean, default: ...}",
        "spec.parameters.f.defualt: unknown field; did you mean default?",
        "spec.parameters.f: no value; give a default, or a value for this run (--set parameters.f=...)",
    ]


def test_a_typed_parameter_fills_an_integer_field_of_a_batch_inference_step():
    doc = run(scoring("score", nodeCount="${{parameters.nodes}}", loggingLevel="${{ parameters.level }}",
                      output={"uri": "${{run.workdir}}/score/", "fileName": "${{run.name}}.txt"}),
              parameters={"nodes": {"type": "integer", "default": 4}, "level": {"type": "string", "default": "DEBUG"}})
    spec = load_pipeline(doc)
    assert spec.steps[0].body["nodeCount"] == "${{parameters.nodes}}"
    assert errors_of(doc, parameters={"nodes": 0, "level": "LOUD"}) == [
        "spec.steps[0].batchInference.nodeCount: 0 is below the minimum 1",
        "spec.steps[0].batchInference.loggingLevel: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    ]


def test_batch_inference_errors_are_blamed_inside_the_step():
    doc = run(scoring("score", input={"uri": "az://d/", "type": "tabular"}, nodeCont=2),
              scoring("bad", output=None, code=None) | {"batchInference": ["not", "a", "spec"]})
    assert errors_of(doc) == [
        "spec.steps[0].batchInference.nodeCont: unknown field; did you mean nodeCount?",
        "spec.steps[0].batchInference.input.format: required with type: tabular; use parquet, csv or jsonl",
        "spec.steps[1].batchInference: expected a BatchInferenceJob spec (a mapping with input, code and output)",
    ]


def test_a_step_has_exactly_one_kind():
    both = {**container("a"), **scoring("a")}
    assert errors_of(run({"name": "none"}, both)) == [
        "spec.steps[0]: give exactly one of batchInference, container or component",
        "spec.steps[1]: batchInference and container are exclusive; give exactly one of batchInference, container "
        "or component",
    ]


def test_container_steps():
    doc = run({"name": "a", "container": {"image": "", "args": ["--n", 3], "env": [{"value": "x"}], "resources": [],
                                          "workingDir": "/app"}},
              {"name": "b", "container": "busybox"})
    assert errors_of(doc) == [
        "spec.steps[0].container.workingDir: unknown field; known fields: image, command, args, env, resources",
        "spec.steps[0].container.image: expected a container image, got ''",
        "spec.steps[0].container.command: required: the command to run, as a list, e.g. [python, publish.py]",
        'spec.steps[0].container.args[1]: 3 is not a string; quote it, e.g. "3"',
        "spec.steps[0].container.env: expected a list of {name, value} (Kubernetes EnvVar)",
        "spec.steps[0].container.resources: expected Kubernetes ResourceRequirements {requests, limits}",
        "spec.steps[1].container: expected {image, command, args, env, resources}",
    ]


def test_component_references():
    doc = run({"name": "a", "component": {"uri": "c.yaml", "configMap": "cm"}},
              {"name": "b", "component": {"configMap": "cm"}},
              {"name": "c", "component": {"uri": "c.yaml", "key": "x.yaml"}},
              container("d", inputs={"x": 1}))
    assert errors_of(doc) == [
        "spec.steps[0].component: give either uri or configMap (with key), not both nor neither",
        "spec.steps[2].component.key: only a configMap has keys; remove it or use configMap",
        "spec.steps[3].inputs: only a component step takes inputs; write ${{...}} in the step's fields",
    ]
    spec = load_pipeline(run({"name": "b", "component": {"configMap": "cm"}},
                             {"name": "c", "component": {"uri": "components/c.yaml"}}), base_dir="/pipelines/iris")
    assert [s.component_ref for s in spec.steps] == [ComponentRef(config_map="cm"),
                                                     ComponentRef(uri="/pipelines/iris/components/c.yaml")]


def test_a_loaded_component_checks_inputs_and_outputs():
    loaded = []

    def resolve(ref: ComponentRef) -> Component:
        loaded.append(ref)
        return TRAIN

    doc = run(component("train", inputs={"data": "az://d/", "max_iter": "${{parameters.iters}}"}),
              container("use", "${{steps.train.outputs.model}}"),
              parameters={"iters": {"type": "integer", "default": 10}})
    spec = load_pipeline(doc, components=resolve)
    assert spec.steps[0].component is TRAIN and loaded == [ComponentRef(uri="az://components/train/component.yaml")]
    assert spec.steps[1].needs == ("train",)
    bad = run(component("train", inputs={"max_iter": "${{parameters.iters}}", "epochs": 3, "nested": {"a": 1}}),
              container("use", "${{steps.train.outputs.modle}}"),
              parameters={"iters": {"type": "string", "default": "ten"}})
    assert errors_of(bad, components=resolve) == [
        "spec.steps[0].inputs.nested: expected a string, number or boolean, got {'a': 1}",
        "spec.steps[0].inputs.max_iter: expected an integer, got 'ten'",
        "spec.steps[0].inputs.epochs: component train_iris 1.2 has no such input; its inputs: data, max_iter",
        "spec.steps[0].inputs.nested: component train_iris 1.2 has no such input; its inputs: data, max_iter",
        "spec.steps[0].inputs.data: required by component train_iris 1.2; give a value (uri_folder)",
        "spec.steps[1].container.command[0]: ${{steps.train.outputs.modle}}: step train has no output 'modle'; "
        "did you mean model?",
    ]


def test_a_component_that_cannot_be_loaded_is_reported_on_the_step():
    def broken(ref: ComponentRef) -> Component:
        if ref.uri:
            raise ComponentError(["version: required", "command: required"])
        raise FileNotFoundError(f"no key {ref.key} in ConfigMap {ref.config_map}")

    doc = run(component("a"), {"name": "b", "component": {"configMap": "cm", "key": "b.yaml"}},
              container("c", "${{steps.a.outputs.anything}}"))
    assert errors_of(doc, components=broken) == [
        "spec.steps[0].component.uri: az://components/train/component.yaml: version: required",
        "spec.steps[0].component.uri: az://components/train/component.yaml: command: required",
        "spec.steps[1].component.configMap: cannot read the component: no key b.yaml in ConfigMap cm",
    ]


def test_without_a_resolver_component_outputs_are_checked_later():
    spec = load_pipeline(run(component("a", inputs={"anything": 1}), container("b", "${{steps.a.outputs.any}}")))
    assert spec.steps[0].component is None and spec.steps[1].needs == ("a",)


@pytest.mark.parametrize("name", ["score", "a", "step-2", "9lives", "x" * 63])
def test_step_names_are_dns_labels(name):
    assert load_pipeline(run(container(name))).steps[0].name == name


@pytest.mark.parametrize("name", ["Score", "a_b", "-a", "a-", "a.b", "x" * 64, "", 7, None])
def test_step_names_that_cannot_name_a_child(name):
    (error,) = errors_of(run(container(name)))
    assert error.startswith(f"spec.steps[0].name: {name!r} is not a step name")


def test_the_resource_around_the_spec():
    assert errors_of({"apiVersion": "v1", "kind": "BatchInferenceJob", "metadata": {"name": "Bad_Name"},
                      "spec": run(container("a"))["spec"]}) == [
        "kind: 'BatchInferenceJob' is not PipelineRun",
        "apiVersion: 'v1' is not served; use parallelrun.dev/v1alpha1",
        "metadata.name: 'Bad_Name' is not a valid name; use lower-case letters, digits, '-' and '.', starting and "
        "ending with a letter or digit",
    ]
    assert errors_of({"kind": "PipelineRun", "apiVersion": "parallelrun.dev/v1alpha1", "metadata": {"name": "x"}}) \
        == ["spec: missing; a PipelineRun needs spec.workdir and spec.steps"]
    assert errors_of({"steps": [], "finally": "x", "wokdir": "/w", "storage": {"secret": "s"}}) == [
        "spec.wokdir: unknown field; did you mean workdir?",
        "spec.workdir: required: the URI under which step outputs and the reuse index go, e.g. az://pipelines/iris/",
        "spec.storage: expected {secretRef: {name: <secret name>}}",
        "spec.steps: required: give at least one step",
        "spec.finally: expected a list of steps",
    ]


def test_a_bare_spec_loads_and_a_relative_workdir_is_relative_to_the_file():
    spec = load_pipeline({"workdir": "work/", "steps": [container("a")]}, base_dir="/pipelines/iris")
    assert (spec.name, spec.workdir, spec.run_workdir) == ("pipeline", "/pipelines/iris/work/",
                                                           "/pipelines/iris/work/pipeline")
    assert errors_of({"workdir": "az://w/${{parameters.env}}/", "steps": [container("a")]}) == [
        "spec.workdir: expressions are not substituted here; give a plain URI"]
