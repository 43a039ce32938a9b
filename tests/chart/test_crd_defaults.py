"""The CRDs' defaults as the API server applies them never contradict the loaders.

kube-apiserver fills every `default` of the structural schema into the objects a
resource has (recursively, array items included) before the operator sees it. So each
example and each valid test resource is defaulted that way and then loaded by the
runner's loader of its kind: it must be accepted, and mean what the resource as
written means (a default the loader reads differently would change the run).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
import yaml
from chart_paths import REPO
from crd_validation import CustomResourceValidator, apply_defaults, schema_nodes
from resource_cases import (
    DELETE,
    TEMPLATE_SPEC,
    VALID_JOBS,
    VALID_PIPELINE_RUNS,
    VALID_SCHEDULES,
    changed,
    job,
    pipeline_run,
    schedule,
)

from parallelrun.runner.pipelines.expressions import substitute
from parallelrun.runner.pipelines.spec import load_pipeline
from parallelrun.runner.schedules.runs import build_run
from parallelrun.runner.schedules.spec import load_schedule
from parallelrun.runner.spec import JobSpec, load_spec

EXAMPLES = sorted(REPO.glob("examples/**/*.yaml"))


def example_resources() -> dict[str, tuple[dict, str]]:
    found = {}
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("parallelrun.dev/"):
                found[f"{path.relative_to(REPO)}: {doc['metadata']['name']}"] = (doc, str(path.parent))
    return found


GPU_SCORING_STEP = {"name": "rescore", "batchInference": {**job()["spec"], "environment": {"gpu": {"count": 1}}}}
OPENAI_SCORING_STEP = {"name": "llm", "batchInference": VALID_JOBS["the builtin OpenAI scorer, least fields"]["spec"]}
RESOURCES = {
    **example_resources(),
    **{f"job: {name}": (r, None) for name, r in VALID_JOBS.items()},
    **{f"schedule: {name}": (r, None) for name, r in VALID_SCHEDULES.items()},
    **{f"pipeline: {name}": (r, None) for name, r in VALID_PIPELINE_RUNS.items()},
    "pipeline: a component from a URI": (pipeline_run(steps=[
        {"name": "train", "component": {"uri": "az://components/train/component.yaml"}}]), None),
    "pipeline: a component from a ConfigMap": (pipeline_run(steps=[
        {"name": "train", "component": {"configMap": "components"}}]), None),
    "schedule: a scoring finally step with a GPU": (schedule(template={"spec": {
        **TEMPLATE_SPEC, "finally": [GPU_SCORING_STEP]}}), None),
    "pipeline: scoring steps with a GPU": (pipeline_run(steps=[dict(GPU_SCORING_STEP, name="score")],
                                                        **{"finally": [GPU_SCORING_STEP]}), None),
    "job: a GPU": (job(environment=GPU_SCORING_STEP["batchInference"]["environment"]), None),
    "pipeline: OpenAI scoring steps": (pipeline_run(steps=[dict(OPENAI_SCORING_STEP, name="score")],
                                                    **{"finally": [OPENAI_SCORING_STEP]}), None),
    "schedule: OpenAI scoring steps": (schedule(template={"spec": {
        **TEMPLATE_SPEC, "steps": [OPENAI_SCORING_STEP], "finally": [dict(OPENAI_SCORING_STEP, name="again")]}}),
        None),
    "schedule: data arrival, defaults": (changed(schedule(trigger={"dataArrival": {"uri": "az://in/"}}, template={
        "spec": {**TEMPLATE_SPEC, "steps": [GPU_SCORING_STEP]}}), "spec.schedule", DELETE), None),
}


def meaning(resource: dict, base_dir: str | None):
    """What the runner's loader makes of a resource, in a form that compares by value."""
    kind = resource["kind"]
    if kind == "BatchInferenceJob":
        return job_meaning(load_spec(resource, base_dir))
    if kind == "PipelineRun":
        return pipeline_meaning(load_pipeline(resource, base_dir))
    assert kind == "PipelineSchedule", kind
    loaded = load_schedule(resource, base_dir)
    run = build_run(loaded, "run", datetime(2000, 1, 1, tzinfo=timezone.utc), "schedule",
                    manifest="az://in/manifest.txt" if loaded.uses_manifest else None)
    return loaded.schedule, loaded.trigger, pipeline_meaning(load_pipeline(run, base_dir))


def job_meaning(spec: JobSpec) -> JobSpec:
    """The loaded spec without `environment`, which is kept as written for the pods (its GPU is read into `gpu`)."""
    return dataclasses.replace(spec, environment={})


def pipeline_meaning(spec) -> list:
    """Each step as loaded; a batchInference step's body as the BatchInferenceJob loader reads it."""
    steps = []
    for step in spec.steps + spec.finally_steps:
        body = step.body
        if step.kind == "batchInference":
            body = job_meaning(load_spec(job(**substitute(step.body, spec.values()))))
        steps.append((step.name, step.kind, body, step.needs, step.retries, step.reuse, step.component_ref))
    return [spec.workdir, dict(spec.parameters), dict(spec.storage), steps]


@pytest.mark.parametrize("case", RESOURCES.values(), ids=RESOURCES.keys())
def test_the_loader_reads_a_defaulted_resource_as_written(crd_validator: CustomResourceValidator, case) -> None:
    resource, base_dir = case
    schema = crd_validator.schemas[resource["apiVersion"], resource["kind"]]
    defaulted = apply_defaults(schema, resource)
    assert meaning(defaulted, base_dir) == meaning(resource, base_dir)


def test_defaults_reach_array_items_and_nested_objects(crd_validator: CustomResourceValidator) -> None:
    schema = crd_validator.schemas["parallelrun.dev/v1alpha1", "PipelineRun"]
    run = pipeline_run(steps=[{"name": "s", "container": {"command": ["true"]}},
                              {"name": "b", "batchInference": {**job()["spec"], "environment": {"gpu": {"count": 1}}}}])
    steps = apply_defaults(schema, run)["spec"]["steps"]
    assert steps[0]["retries"] == 0
    assert steps[1]["batchInference"]["environment"]["gpu"]["resourceName"] == "nvidia.com/gpu"
    assert steps[1]["batchInference"]["output"]["fileName"] == "parallel_run_step.txt"


def test_every_default_of_the_crds_is_met_by_some_resource(crd_validator: CustomResourceValidator) -> None:
    """Each defaulted field is absent from some resource above, so its default was applied and loaded."""
    defaults = {(key, path) for key, schema in crd_validator.schemas.items()
                for path, node in schema_nodes(schema) if "default" in node and ".status" not in path}
    met = set()
    for resource, _ in RESOURCES.values():
        key = (resource["apiVersion"], resource["kind"])
        for path, _value in defaulted_paths(crd_validator.schemas[key], resource):
            met.add((key, path))
    assert defaults - met == set()


def defaulted_paths(node: dict, value, path: str = ""):
    """(schema path, value) of every default apply_defaults fills into `value`."""
    if isinstance(value, dict) and "properties" in node:
        for name, child in node["properties"].items():
            if name not in value and "default" in child:
                yield f"{path}.{name}", child["default"]
            if name in value:
                yield from defaulted_paths(child, value[name], f"{path}.{name}")
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        for item in value.values():
            yield from defaulted_paths(node["additionalProperties"], item, f"{path}.*")
    elif isinstance(value, list) and "items" in node:
        for item in value:
            yield from defaulted_paths(node["items"], item, f"{path}[]")

