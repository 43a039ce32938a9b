"""The CRDs: generated from one source, copied into the chart, structural, well-formed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_paths import CHART, REPO
from crd_validation import schema_nodes, to_json_schema
from kubernetes_validate.utils import latest_version

CRD_FILES = ("batchinferencejobs.yaml", "pipelineschedules.yaml")
KUBERNETES_VERSIONS = ("1.29.0", latest_version())  # the chart's kubeVersion floor, and the newest

# Keywords the CRDs may use: structural ones that crd_validation enforces as the server does.
SCHEMA_KEYWORDS = {
    "type", "description", "format", "enum", "default", "minimum", "maximum", "minLength",
    "maxLength", "pattern", "minItems", "maxItems", "minProperties", "maxProperties", "required",
    "multipleOf", "properties", "additionalProperties", "items", "nullable",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}
FORMATS = {"date-time"}
RULE_KEYS = {"rule", "message", "reason", "fieldPath"}
RULE_REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}
JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list}


def load_crd(name: str) -> dict:
    return yaml.safe_load((REPO / "crds" / name).read_text())


def root_schema(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def resolve(schema: dict, dotted: str) -> dict:
    """The schema node at a path like `.status.progress.items`, or KeyError."""
    node = schema
    for name in dotted.lstrip(".").split("."):
        node = node["properties"][name]
    return node


def load_generator():
    spec = importlib.util.spec_from_file_location("crd_generator", REPO / "crds" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ALL_NODES = [(name, path, node) for name in CRD_FILES for path, node in schema_nodes(root_schema(load_crd(name)))]
ALL_RULES = [(name, path, node, rule) for name, path, node in ALL_NODES
             for rule in node.get("x-kubernetes-validations", [])]


def test_generated_files_are_up_to_date() -> None:
    for path, text in load_generator().render().items():
        assert path.exists() and path.read_text() == text, \
            f"{path.relative_to(REPO)} is out of date: run python crds/generate.py"


@pytest.mark.parametrize("name", CRD_FILES)
def test_chart_crds_are_byte_identical_to_crds(name: str) -> None:
    assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes()


def test_schedule_template_spec_is_the_pipeline_run_spec() -> None:
    run_spec = root_schema(load_crd("pipelineruns.yaml"))["properties"]["spec"]
    schedule = root_schema(load_crd("pipelineschedules.yaml"))["properties"]["spec"]
    assert schedule["properties"]["template"]["properties"]["spec"] == run_spec


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", [REPO / "crds" / n for n in CRD_FILES] + [CHART / "crds" / "kopfpeerings.yaml"],
                         ids=lambda p: p.name if isinstance(p, Path) else p)
def test_crds_are_valid_custom_resource_definitions(path: Path, version: str) -> None:
    for crd in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(crd, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{crd['metadata']['name']}: {'.'.join(map(str, error.path))}: {error.message}")


@pytest.mark.parametrize("name", CRD_FILES)
def test_names_scope_and_subresources(name: str) -> None:
    spec = load_crd(name)["spec"]
    plural, short = {"batchinferencejobs.yaml": ("batchinferencejobs", "bij"),
                     "pipelineschedules.yaml": ("pipelineschedules", "psched")}[name]
    assert spec["group"] == "parallelrun.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["plural"] == plural and spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["parallelrun"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(("name", "path", "node"), ALL_NODES, ids=[f"{n}:{p}" for n, p, _ in ALL_NODES])
def test_schema_node_is_structural(name: str, path: str, node: dict) -> None:
    assert set(node) <= SCHEMA_KEYWORDS, f"unsupported keywords {set(node) - SCHEMA_KEYWORDS}"
    if node.get("x-kubernetes-int-or-string"):
        assert "type" not in node
    elif node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        assert node.get("type") in (None, "object")  # None: any JSON value (a parameter's), as the server allows
    else:
        assert node.get("type") in JSON_TYPES, "every node needs a type"
    assert node.get("x-kubernetes-preserve-unknown-fields", True) is True, "only true is allowed"
    assert node.get("format", "date-time") in FORMATS
    assert not ("properties" in node and "additionalProperties" in node)
    if node.get("type") == "object" and path not in ("<root>", ".metadata"):
        assert {"properties", "additionalProperties", "x-kubernetes-preserve-unknown-fields"} & set(node), \
            "an object with no fields would have everything pruned"
    assert set(node.get("required", [])) <= set(node.get("properties", {}))
    for value in node.get("enum", []):
        assert isinstance(value, JSON_TYPES[node["type"]])
    if "default" in node:
        jsonschema.validate(node["default"], to_json_schema(node))
    if node.get("x-kubernetes-list-type") == "map":
        assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"].get("required", []))


def test_metadata_is_left_to_the_server() -> None:
    for name in CRD_FILES:
        assert root_schema(load_crd(name))["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("name", CRD_FILES)
def test_status_is_completely_typed(name: str) -> None:
    status = root_schema(load_crd(name))["properties"]["status"]
    assert [path for path, node in schema_nodes(status) if node.get("x-kubernetes-preserve-unknown-fields")] == []


@pytest.mark.parametrize(("name", "path", "node", "rule"), ALL_RULES,
                         ids=[f"{n}:{p}:{r['message'][:40]}" for n, p, _, r in ALL_RULES])
def test_cel_rule_is_well_formed(name: str, path: str, node: dict, rule: dict) -> None:
    assert set(rule) <= RULE_KEYS and rule["message"] and rule["reason"] in RULE_REASONS
    celpy.Environment().compile(rule["rule"])
    if "fieldPath" in rule:
        resolve(node, rule["fieldPath"])


@pytest.mark.parametrize(("name", "expected"), [
    ("batchinferencejobs.yaml", ["Phase", "Progress", "Failed", "Nodes", "Items/s", "Age"]),
    ("pipelineschedules.yaml", ["Schedule", "Suspend", "Last", "Next", "Active", "Age"]),
])
def test_printer_columns_show_declared_fields(name: str, expected: list[str]) -> None:
    crd = load_crd(name)
    (version,) = crd["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == expected
    schema = root_schema(crd)
    for col in columns:
        if col["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = resolve(schema, col["jsonPath"])
        assert {"date": "string"}.get(col["type"], col["type"]) == node["type"], col["name"]


BIJ_DEFAULTS = {
    "errorThreshold": -1, "miniBatchErrorThreshold": -1, "allowedFailedPercent": 100,
    "runInvocationTimeout": 60, "runMaxTry": 3, "nodeCount": 1, "loggingLevel": "INFO", "allowReuse": False,
    "output.action": "appendRow", "output.fileName": "parallel_run_step.txt",  # output.format: by the code (txt, jsonl)
}


def test_server_side_defaults() -> None:
    spec = root_schema(load_crd("batchinferencejobs.yaml"))["properties"]["spec"]
    assert {path: resolve(spec, f".{path}").get("default") for path in BIJ_DEFAULTS} == BIJ_DEFAULTS
    for depends_on_pod_or_input in ("miniBatchSize", "processCountPerNode"):
        assert "default" not in spec["properties"][depends_on_pod_or_input]
    schedule = root_schema(load_crd("pipelineschedules.yaml"))["properties"]["spec"]
    assert resolve(schedule, ".successfulRunsHistoryLimit")["default"] == 3
    assert resolve(schedule, ".failedRunsHistoryLimit")["default"] == 1
    assert resolve(schedule, ".trigger.dataArrival.pollIntervalSeconds")["default"] == 300
