"""docs/interop.md: the success and failure conditions and JSON paths it gives Argo Workflows,
Tekton and Kubeflow are checked against the CRDs and the conditions the operator writes, so a
renamed status field breaks this test, not a user's workflow."""

from __future__ import annotations

import re

import yaml
from operator_harness import ROOT

from parallelrun.operator.kit.conditions import with_phase
from parallelrun.operator.pipelines.status import with_steps
from parallelrun.runner.pipelines import dag

DOC = (ROOT / "docs" / "interop.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC, re.S)
_REQUIREMENT = re.compile(r"^\s*([\w.]+)\s*(==|!=|<|>)\s*(\w+)\s*$")
_CONDITIONS = re.compile(r"(?:successCondition|failureCondition):\s*(.+)|(?:success|failure)_condition=\"([^\"]+)\"")
_JSON_PATH = re.compile(r"\{\.(status(?:\.\w+)+)\}")
_WAIT_FOR = re.compile(r"--for=condition=(\w+)")
_CASE = re.compile(r"case \"\$phase\" in ([\w|]+)\)")


def crd_status(kind: str) -> dict:
    crd = yaml.safe_load((ROOT / "crds" / f"{kind.lower()}s.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def schema_at(kind: str, dotted: str) -> dict | None:
    """The status schema node of `status.a.b`, or None where the CRD has no such field."""
    node = crd_status(kind)
    for part in dotted.split(".")[1:]:
        properties = node.get("properties") or {}
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def kind_of(block: str) -> str:
    return "PipelineRun" if "PipelineRun" in block else "BatchInferenceJob"


def written_condition_types() -> set[str]:
    """The condition types the operator writes on the way to Succeeded or Failed, for both kinds."""
    types = set()
    for phase in ("Running", "Succeeded", "Failed"):
        types |= {c["type"] for c in with_phase({}, phase, phase, "m", 1)["conditions"]}
    graph = dag.Graph(("a",), (), {})
    for phase in ("Succeeded", "Failed"):
        types |= {c["type"] for c in with_steps({}, graph, {"a": {"phase": phase}}, {}, 1)["conditions"]}
    return types


def test_the_doc_gives_each_engine_its_conditions():
    conditions = [(kind_of(b), m) for _, b in BLOCKS for m in _CONDITIONS.finditer(b)]
    assert len(conditions) >= 6  # Argo (a job and a run), KFP: success and failure each
    assert {kind for kind, _ in conditions} == {"BatchInferenceJob", "PipelineRun"}
    assert len([p for _, b in BLOCKS for p in _JSON_PATH.findall(b)]) >= 6
    assert _WAIT_FOR.search(DOC) and any(_CASE.search(b) for _, b in BLOCKS)


def test_every_condition_names_a_status_field_and_one_of_its_values():
    for _, block in BLOCKS:
        kind = kind_of(block)
        for match in _CONDITIONS.finditer(block):
            for requirement in (match.group(1) or match.group(2)).split(","):
                field, _, value = _REQUIREMENT.match(requirement).groups()
                node = schema_at(kind, field)
                assert node is not None, f"{kind} has no {field} (docs/interop.md: {requirement.strip()})"
                if "enum" in node:
                    assert value in node["enum"], f"{kind} {field} is never {value}"
                else:
                    assert node["type"] == "integer" and value.isdigit(), requirement


def test_every_json_path_exists_in_the_crd():
    for _, block in BLOCKS:
        for dotted in _JSON_PATH.findall(block):
            assert schema_at(kind_of(block), dotted) is not None, f"{kind_of(block)} has no {dotted}"


def test_waits_and_phase_tests_use_what_the_operator_writes():
    assert set(_WAIT_FOR.findall(DOC)) <= written_condition_types()
    for _, block in BLOCKS:
        for case in _CASE.findall(block):
            assert set(case.split("|")) <= set(schema_at(kind_of(block), "status.phase")["enum"])


def test_the_documented_manifests_are_valid_resources(schema):
    manifests = [yaml.safe_load(m) for _, b in BLOCKS if b.startswith(("apiVersion: argoproj", "  - name"))
                 for m in re.findall(r"manifest: \|\n((?:        .*\n)+)", b)]
    assert {m["kind"] for m in manifests} == {"BatchInferenceJob", "PipelineRun"}
    for manifest in manifests:
        assert schema.validate(manifest) == [], manifest
