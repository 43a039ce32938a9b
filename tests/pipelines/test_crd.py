"""The PipelineRun CRD: a valid, structural CRD that judges resources as load_pipeline does.

The resources are tests/chart/resource_cases.py's, checked with the chart tests'
validator (the OpenAPI schema as kube-apiserver applies it); conftest.py finds them.
"""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from crd_validation import CustomResourceValidator, schema_nodes
from kubernetes_validate.utils import latest_version
from resource_cases import INVALID_PIPELINE_RUNS, VALID_PIPELINE_RUNS, Invalid

from parallelrun.runner.pipelines.spec import PipelineSpecError, load_pipeline

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "pipelineruns.yaml"
CRD = yaml.safe_load(CRD_FILE.read_text())
(VERSION,) = CRD["spec"]["versions"]
ROOT = VERSION["schema"]["openAPIV3Schema"]
STEP = ROOT["properties"]["spec"]["properties"]["steps"]["items"]
EXAMPLE = REPO / "examples" / "pipelines" / "iris" / "pipeline.yaml"


@pytest.fixture(scope="module")
def validator() -> CustomResourceValidator:
    return CustomResourceValidator([CRD])


def node_at(schema: dict, dotted: str) -> dict:
    for name in dotted.lstrip(".").split("."):
        schema = schema["properties"][name]
    return schema


def related(path: str, other: str) -> bool:
    short, long = sorted((path, other), key=len)
    return long == short or long.startswith((short + ".", short + "["))


def test_the_chart_has_the_same_bytes():
    assert (REPO / "charts" / "parallelrun" / "crds" / "pipelineruns.yaml").read_bytes() == CRD_FILE.read_bytes()


@pytest.mark.parametrize("version", ["1.29.0", latest_version()])
def test_it_is_a_valid_custom_resource_definition(version):
    try:
        kubernetes_validate.validate(CRD, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{'.'.join(map(str, error.path))}: {error.message}")


def test_names_and_subresources():
    names = CRD["spec"]["names"]
    assert (CRD["spec"]["group"], CRD["spec"]["scope"]) == ("parallelrun.dev", "Namespaced")
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "PipelineRun", "pipelineruns", ["prun"], ["parallelrun"])
    assert (VERSION["name"], VERSION["served"], VERSION["storage"], VERSION["subresources"]) == (
        "v1alpha1", True, True, {"status": {}})


def test_printer_columns_show_declared_status_fields():
    columns = VERSION["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == ["Phase", "Steps", "Current", "Age"]
    for column in columns:
        if column["jsonPath"] != ".metadata.creationTimestamp":
            assert node_at(ROOT, column["jsonPath"])["type"] == column["type"]


def test_every_node_is_structural_and_there_are_no_cel_rules():
    for path, node in schema_nodes(ROOT):
        assert "x-kubernetes-validations" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
        elif "type" not in node:  # any JSON value: parameter values and component inputs
            assert node == {"description": node["description"], "x-kubernetes-preserve-unknown-fields": True}, path
            assert path.endswith((".default", ".value", ".inputs.*")), path
        if node.get("type") == "object" and path not in ("<root>", ".metadata"):
            assert {"properties", "additionalProperties", "x-kubernetes-preserve-unknown-fields"} & set(node), path


def test_status_is_completely_typed():
    status = ROOT["properties"]["status"]
    assert [path for path, node in schema_nodes(status) if "type" not in node
            or node.get("x-kubernetes-preserve-unknown-fields")] == []


def test_batch_inference_is_the_job_spec_open_to_expressions():
    job = yaml.safe_load((REPO / "crds" / "batchinferencejobs.yaml").read_text())
    job_spec = job["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    step_spec = STEP["properties"]["batchInference"]
    assert [p for p, _ in schema_nodes(step_spec)] == [p for p, _ in schema_nodes(job_spec)]
    expression = r"^\$\{\{[^{}]*\}\}$"
    integer = {k: v for k, v in node_at(job_spec, ".nodeCount").items() if k != "type"}
    assert node_at(step_spec, ".nodeCount") == {**integer, "x-kubernetes-int-or-string": True, "pattern": expression}
    enum = {k: v for k, v in node_at(job_spec, ".output.format").items() if k != "enum"}
    assert node_at(step_spec, ".output.format") == {**enum, "pattern": "^(txt|csv|parquet|jsonl)$|" + expression}


@pytest.mark.parametrize("resource", VALID_PIPELINE_RUNS.values(), ids=VALID_PIPELINE_RUNS.keys())
def test_both_accept(validator: CustomResourceValidator, resource: dict):
    assert [str(v) for v in validator.validate(resource)] == []
    load_pipeline(resource)


@pytest.mark.parametrize("case", INVALID_PIPELINE_RUNS, ids=str)
def test_both_reject_for_the_same_field(validator: CustomResourceValidator, case: Invalid):
    violations = validator.validate(case.resource)
    assert any(v.path == case.path and case.words in v.message for v in violations), \
        f"expected {case.path}: ...{case.words}..., got {[str(v) for v in violations]}"
    with pytest.raises(PipelineSpecError) as raised:
        load_pipeline(case.resource)
    blamed = [error.split(": ", 1)[0] for error in raised.value.errors]
    assert any(related(path, case.path) for path in blamed), f"CRD blames {case.path}, load_pipeline {blamed}"


def test_the_example_pipeline_is_valid(validator: CustomResourceValidator):
    assert [str(v) for v in validator.validate(yaml.safe_load(EXAMPLE.read_text()))] == []
