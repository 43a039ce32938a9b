"""Resources against the CRDs as the API server checks them: OpenAPI schema, then CEL rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chart_paths import REPO
from crd_validation import CustomResourceValidator, apply_defaults, schema_nodes
from resource_cases import INVALID_JOBS, INVALID_SCHEDULES, VALID_JOBS, VALID_SCHEDULES, Invalid, job

VALID = {**{f"job: {k}": v for k, v in VALID_JOBS.items()},
         **{f"schedule: {k}": v for k, v in VALID_SCHEDULES.items()}}
INVALID = INVALID_JOBS + INVALID_SCHEDULES
EXAMPLE_FILES = sorted(REPO.glob("examples/*/*.yaml"))


def parallelrun_resources(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text())
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("parallelrun.dev/")]


@pytest.mark.parametrize("resource", VALID.values(), ids=VALID.keys())
def test_valid_resource_is_accepted(crd_validator: CustomResourceValidator, resource: dict) -> None:
    assert crd_validator.validate(resource) == []


@pytest.mark.parametrize("case", INVALID, ids=str)
def test_invalid_resource_is_rejected_for_its_reason(crd_validator: CustomResourceValidator, case: Invalid) -> None:
    violations = crd_validator.validate(case.resource)
    assert any(v.path == case.path and case.words in v.message for v in violations), \
        f"expected {case.path}: ...{case.words}..., got {[str(v) for v in violations]}"


def test_every_cel_rule_rejects_an_invalid_resource(crd_validator: CustomResourceValidator) -> None:
    rules = {rule["message"] for schema in crd_validator.schemas.values() for _, node in schema_nodes(schema)
             for rule in node.get("x-kubernetes-validations", [])}
    messages = {v.message for case in INVALID for v in crd_validator.validate(case.resource)}
    untested = rules - messages
    assert not untested, f"no invalid resource breaks these rules: {sorted(untested)}"


def test_defaults_are_applied_before_the_rules(crd_validator: CustomResourceValidator) -> None:
    schema = crd_validator.schemas["parallelrun.dev/v1alpha1", "BatchInferenceJob"]
    spec = apply_defaults(schema, job())["spec"]
    assert spec["output"] == {"uri": "az://out/iris/", "action": "appendRow",
                              "fileName": "parallel_run_step.txt"}  # format: the loader's, by the code
    assert (spec["nodeCount"], spec["runMaxTry"], spec["errorThreshold"]) == (1, 3, -1)
    assert "miniBatchSize" not in spec and "processCountPerNode" not in spec
    assert "environment" not in spec, "defaults inside absent objects are not applied"


def test_validator_reports_missing_metadata_name(crd_validator: CustomResourceValidator) -> None:
    resource = job()
    del resource["metadata"]["name"]
    assert [str(v) for v in crd_validator.validate(resource)] == [
        "metadata.name: Required value: name or generateName is required"]


@pytest.mark.parametrize("path", EXAMPLE_FILES or [pytest.param(None, marks=pytest.mark.skip("no examples yet"))],
                         ids=lambda p: str(p.relative_to(REPO)) if p else "none")
def test_example_is_valid(crd_validator: CustomResourceValidator, path: Path) -> None:
    resources = parallelrun_resources(path)
    if not resources:
        pytest.skip(f"{path.name} holds no parallelrun resource")
    for resource in resources:
        assert [str(v) for v in crd_validator.validate(resource)] == [], resource["metadata"].get("name")
