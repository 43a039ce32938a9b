"""Components: versioned, reusable steps in Azure ML v2's command component shape.

```yaml
kind: Component
name: train_iris
version: "1.2"
environment: {image: registry/trainer:1.0}
code: {uri: ./src}                      # relative to the component file
inputs:  {data: {type: uri_folder}, max_iter: {type: integer, default: 500}}
outputs: {model: {type: uri_folder}}
command: python train.py --data ${{inputs.data}} --out ${{outputs.model}}
```

`command` is a string run by `sh -c` from the code folder, or a list of arguments. A
`type: parallel` component has a `batchInference:` BatchInferenceJob spec instead.
For Azure ML files, `code` may be a plain path, and `$schema`, `display_name` and
`tags` are accepted and ignored, and so are an `azureml:` environment and an
environment's `name`, `version` and `conda_file` (local mode runs in this Python
environment; the cluster runs the image, or the operator's default image).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..api import API_VERSION
from ..problems import unknown_fields
from ..spec import SpecError
from . import batch
from .expressions import Scope, locate, problem
from .uris import join_uri
from .values import SCALAR_TYPES, URI_TYPES, type_problem

_FIELDS = ("$schema", "apiVersion", "kind", "type", "name", "version", "display_name", "description", "tags",
           "environment", "code", "inputs", "outputs", "command", "batchInference")
_INPUT_FIELDS = ("type", "default", "optional", "description")
_ENVIRONMENT_FIELDS = {"image", "name", "version", "conda_file", "description"}  # AML's besides the image
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDERS = {"integer": 1, "number": 1, "boolean": False}  # stand-ins for inputs with no default

_Fail = Callable[[str, str], None]  # records "path: message"


class ComponentError(SpecError):
    """An invalid component; `.errors` has one "path: problem; fix" line each."""

    what = "component"


@dataclass(frozen=True)
class Input:
    type: str
    default: Any = None
    optional: bool = False

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    type: str  # "command" | "parallel"
    inputs: Mapping[str, Input] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)  # name → uri_folder | uri_file
    command: str | tuple[str, ...] | None = None  # type command
    batch_inference: dict | None = None  # type parallel: a BatchInferenceJob spec, as written
    image: str | None = None
    code: str | None = None  # the code folder's URI
    description: str | None = None


def load_component_text(text: str | bytes, base_dir: str | None = None) -> Component:
    """Parse a component file's YAML and load it (`base_dir`: the file's folder)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ComponentError([f"component: not valid YAML: {error}"]) from None
    return load_component(doc, base_dir)


def load_component(doc: Any, base_dir: str | None = None) -> Component:
    """Validate a component; every problem is reported at once as a ComponentError."""
    if not isinstance(doc, dict):
        raise ComponentError([f"component: expected a mapping, got {type(doc).__name__}"])
    errors: list[str] = []

    def fail(path: str, message: str) -> None:
        errors.append(f"{path}: {message}")

    for where, why in unknown_fields("", doc, _FIELDS):
        fail(where, why)
    if doc.get("apiVersion", API_VERSION) != API_VERSION:
        fail("apiVersion", f"{doc['apiVersion']!r} is not served; use {API_VERSION}")
    if doc.get("kind", "Component") != "Component":
        fail("kind", f"{doc['kind']!r} is not Component")
    kind = doc.get("type", "command")
    if kind not in ("command", "parallel"):
        fail("type", f"{kind!r} is not command or parallel")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        fail("name", f"{name!r} is not a component name; use letters, digits, '_', '-' and '.', e.g. train_iris")
    version = _version(doc.get("version"), fail)
    inputs = _inputs(doc.get("inputs"), fail)
    outputs = _outputs(doc.get("outputs"), fail)
    command, job = doc.get("command"), doc.get("batchInference")
    if kind == "parallel":
        if command is not None:
            fail("command", "a parallel component runs its batchInference spec; remove command")
        if job is None:
            fail("batchInference", "required with type: parallel; give a BatchInferenceJob spec")
        else:
            stand_ins = {f"inputs.{n}": _PLACEHOLDERS[i.type] if i.default is None else i.default
                         for n, i in inputs.items() if i.default is not None or i.type in _PLACEHOLDERS}
            errors += batch.spec_problems(job, "batchInference", stand_ins, base_dir)
        body, where = job, "batchInference"
    else:
        if job is not None:
            fail("batchInference", "only a type: parallel component has one; remove it or set type: parallel")
        command = _command(command, fail)
        body, where = command, "command"
    declared = Scope(inputs=_names(doc.get("inputs")), outputs=_names(doc.get("outputs")))  # valid or not
    for path, ref in locate(body, where):
        message = problem(ref, declared)
        if message:
            fail(path, message)
    environment = doc.get("environment")
    if isinstance(environment, str) and environment.startswith("azureml:"):
        environment = None  # an AML environment: this Python environment here, the default image on the cluster
    image = environment.get("image") if isinstance(environment, dict) and set(environment) <= _ENVIRONMENT_FIELDS \
        else None
    if environment is not None and (not isinstance(image, str) or not image):
        fail("environment", f"expected {{image: <container image>}}, got {environment!r}")
    code = doc.get("code")
    code_uri = code.get("uri") if isinstance(code, dict) and set(code) == {"uri"} else code
    if code is not None and (not isinstance(code_uri, str) or not code_uri):
        fail("code", "expected {uri: <folder>}, relative to the component file or a URL")
        code_uri = None
    if errors:
        raise ComponentError(errors)
    assert isinstance(name, str)  # else a problem was reported
    return Component(
        name=name, version=version, type=kind, inputs=inputs, outputs=outputs,
        command=tuple(command) if isinstance(command, list) else command,
        batch_inference=job, image=image,
        code=join_uri(base_dir, code_uri) if code_uri else None, description=doc.get("description"),
    )


def _version(value: Any, fail: _Fail) -> str:
    if isinstance(value, float):
        fail("version", f"{value!r} reads as a number; quote it, e.g. \"{value}\", so that 1.10 stays 1.10")
    elif isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        fail("version", f"required: a version such as \"1.2\", got {value!r}")
    return str(value)


def _inputs(value: Any, fail: _Fail) -> dict[str, Input]:
    result: dict[str, Input] = {}
    for name, spec in _named("inputs", value, fail):
        path = f"inputs.{name}"
        if not isinstance(spec, dict):
            fail(path, f"expected {{type: ..., default: ...}}, got {spec!r}")
            continue
        for where, why in unknown_fields(path, spec, _INPUT_FIELDS):
            fail(where, why)
        kind = spec.get("type")
        if kind not in SCALAR_TYPES + URI_TYPES:
            fail(f"{path}.type", f"{kind!r} is not one of {', '.join(URI_TYPES + SCALAR_TYPES)}")
            continue
        default, optional = spec.get("default"), spec.get("optional", False)
        if default is not None and (problem := type_problem(kind, default)):
            fail(f"{path}.default", problem)
        if not isinstance(optional, bool):
            fail(f"{path}.optional", f"expected true or false, got {optional!r}")
        result[name] = Input(kind, default, optional is True)
    return result


def _outputs(value: Any, fail: _Fail) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, spec in _named("outputs", value, fail):
        if not isinstance(spec, dict) or set(spec) - {"type", "description"}:
            fail(f"outputs.{name}", f"expected {{type: uri_folder|uri_file, description: ...}}, got {spec!r}")
        elif spec.get("type") not in URI_TYPES:
            fail(f"outputs.{name}.type", f"{spec.get('type')!r} is not one of {', '.join(URI_TYPES)}")
        else:
            result[name] = spec["type"]
    return result


def _named(path: str, value: Any, fail: _Fail) -> list[tuple[str, Any]]:
    """The (name, spec) entries of an inputs/outputs mapping whose names are identifiers."""
    if value is None:
        return []
    if not isinstance(value, dict):
        fail(path, f"expected a mapping of names to {{type: ...}}, got {type(value).__name__}")
        return []
    entries = []
    for name, spec in value.items():
        if not isinstance(name, str) or not _IO_NAME.match(name):
            fail(f"{path}.{name}", "not a name; use a letter or _ followed by letters, digits or _")
        else:
            entries.append((name, spec))
    return entries


def _names(value: Any) -> list[str]:
    return [str(name) for name in value] if isinstance(value, dict) else []


def _command(value: Any, fail: _Fail) -> str | list[str] | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    fail("command", "required: a command line (run by sh -c) or a list of arguments, all strings")
    return None


def check_inputs(component: Component, given: Mapping[str, Any]) -> list[str]:
    """Problems of the inputs a step gives: unknown, missing or of the wrong type, all at once."""
    errors = []
    for name, value in given.items():
        declared = component.inputs.get(name)
        if declared is None:
            known = ", ".join(component.inputs) or "none"
            errors.append(f"inputs.{name}: component {component.name} {component.version} has no such input; "
                          f"its inputs: {known}")
        elif type_problem(declared.type, value):
            errors.append(f"inputs.{name}: {type_problem(declared.type, value)}")
    for name, declared in component.inputs.items():
        if declared.required and name not in given:
            errors.append(f"inputs.{name}: required by component {component.name} {component.version}; "
                          f"give a value ({declared.type})")
    return errors
