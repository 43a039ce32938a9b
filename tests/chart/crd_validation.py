"""Validate custom resources against their CRD as kube-apiserver would, with no server.

For a resource whose apiVersion/kind a CRD serves, in the server's order:

1. defaults from the structural schema are applied (inside objects that are present);
2. the OpenAPI schema is checked as JSON Schema, with unknown fields rejected as
   kubectl's default strict field validation rejects them;
3. `x-kubernetes-list-type` map and set lists are checked for duplicates;
4. unless a value has the wrong type, every `x-kubernetes-validations` CEL rule is
   evaluated (with cel-python) with `self` bound to each value present, and a false
   rule blames `<path><fieldPath>`.

Violations come back with Kubernetes-style paths, e.g. `spec.input.format`.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml


@dataclass(frozen=True)
class Violation:
    path: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def load_documents(paths: Iterable[Path]) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def to_json_schema(node: dict) -> dict:
    """Translate a structural schema node (of the keywords the CRDs use) into JSON Schema 2020-12."""
    out: dict[str, Any] = {}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    for keyword in ("format", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems",
                    "maxItems", "minProperties", "maxProperties", "required", "multipleOf"):
        if keyword in node:
            out[keyword] = node[keyword]
    if "properties" in node:
        out["properties"] = {name: to_json_schema(child) for name, child in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    return out


def apply_defaults(node: dict, value: Any) -> Any:
    """Return a copy of value with the schema's defaults filled in, as the API server does."""
    if isinstance(value, dict) and "properties" in node:
        result = dict(value)
        for name, child in node["properties"].items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(child, result[name])
        return result
    if isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {key: apply_defaults(node["additionalProperties"], item) for key, item in value.items()}
    if isinstance(value, list) and "items" in node:
        return [apply_defaults(node["items"], item) for item in value]
    return value


def schema_nodes(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every node of a structural schema (itself included), with a path like `.spec.sideInputs[].name`."""
    yield path or "<root>", schema
    for name, child in schema.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from schema_nodes(schema["items"], f"{path}[]")


def path_of(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def join(path: str, relative: str) -> str:
    """Append a CEL fieldPath such as `.format` to a path."""
    return path + relative if path else relative.lstrip(".")


# The date-time forms the API server's format check accepts: RFC 3339, the zone optional.
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def is_date_time(value: Any) -> bool:
    return not isinstance(value, str) or bool(DATE_TIME.match(value))


def schema_violations(schema: dict, resource: dict) -> list[Violation]:
    validator = jsonschema.Draft202012Validator(to_json_schema(schema), format_checker=FORMATS)
    found = []
    for error in validator.iter_errors(resource):
        path = path_of(error.absolute_path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            found += [Violation(join(path, f".{name}"), "Required value", "FieldValueRequired")
                      for name in missing]
        elif error.validator == "additionalProperties" and error.validator_value is False:
            known = error.schema.get("properties", {})
            found += [Violation(join(path, f".{name}"), "unknown field", "FieldValueForbidden")
                      for name in error.instance if name not in known]
        elif error.validator == "type":
            found.append(Violation(path, f"Invalid value: {error.message}", "FieldValueTypeInvalid"))
        elif error.validator == "enum":
            found.append(Violation(path, f"Unsupported value: {error.instance!r}: supported values: "
                                   + ", ".join(map(repr, error.validator_value)), "FieldValueNotSupported"))
        else:
            found.append(Violation(path, f"Invalid value: {error.message}"))
    return found


def walk(node: dict, value: Any, path: str) -> Iterator[tuple[dict, Any, str]]:
    """Yield (schema node, value, path) for every value present in the resource."""
    yield node, value, path
    if isinstance(value, dict):
        for name, item in value.items():
            child = node.get("properties", {}).get(name)
            if child is None and isinstance(node.get("additionalProperties"), dict):
                child = node["additionalProperties"]
            if child is not None:
                yield from walk(child, item, join(path, f".{name}"))
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            yield from walk(node["items"], item, f"{path}[{index}]")


def list_type_violations(node: dict, value: Any, path: str) -> list[Violation]:
    list_type = node.get("x-kubernetes-list-type")
    if not isinstance(value, list) or list_type not in ("map", "set"):
        return []
    seen, found = [], []
    for index, item in enumerate(value):
        if list_type == "map":
            if not isinstance(item, dict):
                continue
            key = tuple(item.get(name) for name in node["x-kubernetes-list-map-keys"])
        else:
            key = item
        if key in seen:
            found.append(Violation(f"{path}[{index}]", f"Duplicate value: {key!r}", "FieldValueDuplicate"))
        seen.append(key)
    return found


@functools.cache
def cel_program(expression: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(expression))


def cel_violations(node: dict, value: Any, path: str) -> list[Violation]:
    found = []
    for validation in node.get("x-kubernetes-validations", []):
        blamed = join(path, validation.get("fieldPath", ""))
        try:
            result = cel_program(validation["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as error:
            found.append(Violation(blamed, f"Invalid value: rule {validation['rule']!r} failed: {error}"))
            continue
        if not result:
            found.append(Violation(blamed, validation["message"], validation.get("reason", "FieldValueInvalid")))
    return found


def metadata_violations(resource: dict) -> list[Violation]:
    metadata = resource.get("metadata")
    if not isinstance(metadata, dict) or not (metadata.get("name") or metadata.get("generateName")):
        return [Violation("metadata.name", "Required value: name or generateName is required",
                          "FieldValueRequired")]
    return []


def with_implicit_fields(schema: dict) -> dict:
    """The root schema as the server sees it: apiVersion, kind and metadata always exist."""
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return {**schema, "properties": {**implicit, **schema.get("properties", {})}}


class CustomResourceValidator:
    """Validates resources of the kinds the given CustomResourceDefinitions serve."""

    def __init__(self, crds: Iterable[dict]) -> None:
        self.schemas: dict[tuple[str, str], dict] = {}
        for crd in crds:
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    api_version = f"{spec['group']}/{version['name']}"
                    root = version["schema"]["openAPIV3Schema"]
                    self.schemas[api_version, spec["names"]["kind"]] = with_implicit_fields(root)

    def validate(self, resource: dict) -> list[Violation]:
        """Every violation the API server would report when the resource is created."""
        schema = self.schemas[resource["apiVersion"], resource["kind"]]
        defaulted = apply_defaults(schema, resource)
        found = metadata_violations(defaulted) + schema_violations(schema, defaulted)
        # Like the server, evaluate no CEL rule on values of the wrong type.
        check_cel = not any(v.reason == "FieldValueTypeInvalid" for v in found)
        for node, value, path in walk(schema, defaulted, ""):
            found += list_type_violations(node, value, path)
            if check_cel:
                found += cel_violations(node, value, path)
        return found
