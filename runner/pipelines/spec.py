"""Load a PipelineRun: typed parameters, steps and finally steps, all checked at once.

`load_pipeline` takes the resource a user would `kubectl apply` (or its bare `spec`)
and reports every problem as a "path: problem; fix" line of one PipelineSpecError.
Steps keep their fields as written: expressions are substituted when a step starts
(`expressions.substitute`), once the outputs they name exist. What can be checked
before is checked here: names, dependencies and cycles, each expression against what
it names, parameter types, component inputs, and each batchInference spec with the
parameters in place (expressions left over are strings: URIs, names, the run's status).

Decisions the design leaves open:

- Parameter values: given values (`--set parameters.X=...`, a schedule) override
  `spec.parameters.X.value`, which overrides `default`; given text is parsed by type.
- `${{run.workdir}}` is `<spec.workdir>/<run name>`: the run's own folder.
- A finally step's `dependsOn` may name only finally steps: every regular step is over
  before any finally step starts, whatever happened, so waiting for one says nothing.
  A finally step may use a regular step's outputs; if that step did not succeed, the
  finally step is Skipped (as Tekton does), since the value does not exist.
- `reuse` defaults to true, but to false for finally steps: they report on this run.
- Child resources are named `<run>-<step>`, so a step name is a DNS-1123 label.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api import API_VERSION, PIPELINE_RUN
from ..problems import DNS_NAME, Problems, did_you_mean
from ..spec import SpecError
from . import batch
from .component import Component, ComponentError, check_inputs
from .dag import Graph, cycles
from .expressions import Scope, locate, problem, substitute
from .uris import join_uri
from .values import SCALAR_TYPES, from_text, type_problem

KIND = PIPELINE_RUN.kind
KINDS = ("batchInference", "container", "component")

_SPEC_FIELDS = ("parameters", "workdir", "storage", "queueName", "priorityClassName", "steps", "finally")
_PARAMETER_FIELDS = ("type", "default", "value", "description")
_STEP_FIELDS = ("name", *KINDS, "dependsOn", "retries", "reuse", "inputs")
_CONTAINER_FIELDS = ("image", "command", "args", "env", "resources")
_COMPONENT_FIELDS = ("uri", "configMap", "key")
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # DNS-1123 label


class PipelineSpecError(SpecError):
    """An invalid PipelineRun; `.errors` has one "path: problem; fix" line each."""

    what = KIND


@dataclass(frozen=True)
class ComponentRef:
    """Where a component step's file is: a URI (resolved against the pipeline file) or a ConfigMap key."""

    uri: str | None = None
    config_map: str | None = None
    key: str = "component.yaml"


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # batchInference | container | component
    body: Any  # the kind's mapping as written (for component: the {uri} or {configMap, key} mapping)
    needs: tuple[str, ...] = ()  # from dependsOn and referenced outputs, in spec order
    inputs: Mapping[str, Any] = field(default_factory=dict)  # component steps, as written
    retries: int = 0
    reuse: bool = True
    is_finally: bool = False
    component_ref: ComponentRef | None = None
    component: Component | None = None  # loaded when load_pipeline was given a resolver


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    namespace: str | None
    parameters: Mapping[str, Any]  # every parameter's value for this run
    workdir: str
    steps: tuple[Step, ...]
    finally_steps: tuple[Step, ...] = ()
    storage: Mapping[str, Any] = field(default_factory=dict)  # the default of every step
    base_dir: str | None = None  # the file's folder: relative URIs in steps are relative to it
    queue_name: str | None = None  # every step's Kueue LocalQueue, unless a batchInference step names its own
    priority_class_name: str | None = None  # every step's pods' PriorityClass, likewise

    @property
    def run_workdir(self) -> str:
        """`${{run.workdir}}`: this run's folder under the pipeline's workdir."""
        return f"{self.workdir.rstrip('/')}/{self.name}"

    @property
    def graph(self) -> Graph:
        all_steps = self.steps + self.finally_steps
        return Graph(tuple(s.name for s in self.steps), tuple(s.name for s in self.finally_steps),
                     {s.name: s.needs for s in all_steps})

    def values(self) -> dict[str, Any]:
        """The expression values known when the run starts: parameters, run name and workdir."""
        return _known_values(self.name, self.run_workdir, self.parameters)


def _known_values(name: str, run_workdir: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {**{f"parameters.{k}": v for k, v in parameters.items() if v is not None},
            "run.name": name, "run.workdir": run_workdir}


ComponentResolver = Callable[[ComponentRef], Component]


def load_pipeline(doc: Any, base_dir: str | None = None, parameters: Mapping[str, Any] | None = None,
                  components: ComponentResolver | None = None) -> PipelineSpec:
    """Validate a PipelineRun resource (or its bare `spec`).

    `parameters` are values given for this run. `components` loads a component step's
    file (raising ComponentError or OSError); without it, component outputs and inputs
    are checked when the step starts.
    """
    return _Loader(base_dir, components).load(doc, dict(parameters or {}))


@dataclass
class _Draft:
    """A step between the two passes: read alone first, then checked against the others."""

    path: str
    step: Step
    depends_on: list[str]


class _Loader(Problems):
    def __init__(self, base_dir: str | None, components: ComponentResolver | None):
        super().__init__()
        self.base_dir = base_dir
        self.components = components

    # -- the resource ------------------------------------------------------------

    def load(self, doc: Any, given: dict[str, Any]) -> PipelineSpec:
        if not isinstance(doc, dict):
            raise PipelineSpecError([f"resource: expected a mapping, got {type(doc).__name__}"])
        name: str = "pipeline"
        namespace: str | None = None
        spec: Any = doc
        if "spec" in doc or "kind" in doc or "apiVersion" in doc:
            if doc.get("kind") != KIND:
                self.fail("kind", f"{doc.get('kind')!r} is not {KIND}")
            if doc.get("apiVersion") != API_VERSION:
                self.fail("apiVersion", f"{doc.get('apiVersion')!r} is not served; use {API_VERSION}")
            meta = doc.get("metadata") or {}
            named, namespace, spec = meta.get("name"), meta.get("namespace"), doc.get("spec")
            if isinstance(named, str) and DNS_NAME.match(named):
                name = named
            else:
                self.fail("metadata.name", f"{named!r} is not a valid name; use lower-case letters, digits, '-' "
                          "and '.', starting and ending with a letter or digit")
        if not isinstance(spec, dict):
            raise PipelineSpecError([*self.errors, "spec: missing; a PipelineRun needs spec.workdir and spec.steps"])
        self.unknown("spec", spec, _SPEC_FIELDS)
        values = self.parameters(spec.get("parameters"), given)
        workdir = self.workdir(spec.get("workdir"))
        storage = spec.get("storage") or {}
        secret = storage.get("secretRef") if isinstance(storage, dict) else None
        if storage and (set(storage) != {"secretRef"} or not isinstance((secret or {}).get("name"), str)):
            self.fail("spec.storage", "expected {secretRef: {name: <secret name>}}")
            storage = {}
        queue_name = self.object_name("spec.queueName", spec.get("queueName"), "a Kueue LocalQueue of this namespace")
        priority_class_name = self.object_name("spec.priorityClassName", spec.get("priorityClassName"),
                                               "a PriorityClass")
        drafts = self.read_steps(spec.get("steps"), "spec.steps", required=True) + \
            self.read_steps(spec.get("finally"), "spec.finally", required=False)
        steps = self.link(drafts, values, _known_values(name, f"{workdir.rstrip('/')}/{name}", values))
        result = PipelineSpec(
            name=name, namespace=namespace, parameters=values, workdir=workdir,
            steps=tuple(s for s in steps if not s.is_finally), finally_steps=tuple(s for s in steps if s.is_finally),
            storage=storage, base_dir=self.base_dir, queue_name=queue_name,
            priority_class_name=priority_class_name)
        for cycle in cycles(result.graph):
            first = next(d.path for d in drafts if d.step.name == cycle[0])
            self.fail(first, f"steps {' → '.join(cycle)} form a cycle; break it: remove a dependsOn "
                      "entry or a ${{steps...}} reference")
        if self.errors:
            raise PipelineSpecError(self.errors)
        return result

    def parameters(self, declared: Any, given: dict[str, Any]) -> dict[str, Any]:
        """Every parameter's value: given, else spec value, else default (None where invalid)."""
        if declared is None:
            declared = {}
        if not isinstance(declared, dict):
            self.fail("spec.parameters", "expected a mapping of names to {type, default}")
            declared = {}
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            path = f"spec.parameters.{name}"
            if not isinstance(name, str) or not _PARAMETER_NAME.match(name):
                self.fail(path, "not a parameter name; use a letter or _ followed by letters, digits or _")
                continue
            values[name] = None
            if not isinstance(spec, dict):
                self.fail(path, f"expected {{type: {'|'.join(SCALAR_TYPES)}, default: ...}}")
                continue
            self.unknown(path, spec, _PARAMETER_FIELDS)
            kind = spec.get("type")
            if kind not in SCALAR_TYPES:
                self.fail(f"{path}.type", f"{kind!r} is not one of {', '.join(SCALAR_TYPES)}")
                continue
            for key in ("default", "value"):
                if spec.get(key) is not None and (problem := type_problem(kind, spec[key])):
                    self.fail(f"{path}.{key}", problem)
            if name in given:
                value = from_text(kind, given[name])
                if type_problem(kind, value):
                    self.fail(f"parameters.{name}", f"{type_problem(kind, value)} for the {kind} parameter {name}")
                    continue
            else:
                value = spec.get("value", spec.get("default"))
                if value is None:
                    self.fail(path, f"no value; give a default, or a value for this run (--set parameters.{name}=...)")
                elif type_problem(kind, value):
                    continue
            values[name] = value
        for name in given:
            if name not in declared:
                hint = did_you_mean(name, declared, "declare it under spec.parameters")
                self.fail(f"parameters.{name}", f"not a parameter of this pipeline; {hint}")
        return values

    def workdir(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            self.fail("spec.workdir", "required: the URI under which step outputs and the reuse index go, "
                      "e.g. az://pipelines/iris/")
            return "."
        if "${{" in value:
            self.fail("spec.workdir", "expressions are not substituted here; give a plain URI")
        return join_uri(self.base_dir, value)

    # -- each step alone -----------------------------------------------------------

    def read_steps(self, value: Any, path: str, required: bool) -> list[_Draft]:
        if value is None or value == []:
            if required:
                self.fail(path, "required: give at least one step")
            return []
        if not isinstance(value, list):
            self.fail(path, "expected a list of steps")
            return []
        drafts = []
        for i, raw in enumerate(value):
            if not isinstance(raw, dict):
                self.fail(f"{path}[{i}]", "expected a step: {name, batchInference|container|component}")
            else:
                drafts.append(self.read_step(raw, f"{path}[{i}]", is_finally=path == "spec.finally"))
        return drafts

    def read_step(self, raw: dict, path: str, is_finally: bool) -> _Draft:
        self.unknown(path, raw, _STEP_FIELDS)
        name = raw.get("name")
        if not isinstance(name, str) or not _LABEL.match(name):
            self.fail(f"{path}.name", f"{name!r} is not a step name; use lower-case letters, digits and '-', "
                      "starting and ending with a letter or digit, at most 63 (it names the child <run>-<step>)")
            name = str(name)
        kinds = [kind for kind in KINDS if raw.get(kind) is not None]
        if len(kinds) != 1:
            self.fail(path, ("" if not kinds else f"{' and '.join(kinds)} are exclusive; ")
                      + "give exactly one of batchInference, container or component")
        kind = kinds[0] if kinds else ""
        body = raw.get(kind)
        ref = self.component_ref(body, f"{path}.component") if kind == "component" else None
        if kind == "container":
            self.container(body, f"{path}.container")
        inputs = raw.get("inputs") or {}
        if not isinstance(inputs, dict):
            self.fail(f"{path}.inputs", "expected a mapping of input names to values")
            inputs = {}
        elif inputs and kind != "component":
            self.fail(f"{path}.inputs", "only a component step takes inputs; write ${{...}} in the step's fields")
        for key, value in inputs.items():
            if isinstance(value, (dict, list)) or value is None:
                self.fail(f"{path}.inputs.{key}", f"expected a string, number or boolean, got {value!r}")
        retries = raw.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            self.fail(f"{path}.retries", f"expected an integer >= 0, got {retries!r}")
            retries = 0
        reuse = raw.get("reuse", not is_finally)
        if not isinstance(reuse, bool):
            self.fail(f"{path}.reuse", f"expected true or false, got {reuse!r}")
            reuse = False
        step = Step(name=name, kind=kind, body=body, inputs=inputs, retries=retries, reuse=reuse,
                    is_finally=is_finally, component_ref=ref, component=self.component(ref, path))
        return _Draft(path, step, self.depends_on(raw.get("dependsOn"), f"{path}.dependsOn"))

    def container(self, body: Any, path: str) -> None:
        if not isinstance(body, dict):
            self.fail(path, "expected {image, command, args, env, resources}")
            return
        self.unknown(path, body, _CONTAINER_FIELDS)
        if body.get("image") is not None and (not isinstance(body["image"], str) or not body["image"]):
            self.fail(f"{path}.image", f"expected a container image, got {body['image']!r}")
        if not body.get("command"):
            self.fail(f"{path}.command", "required: the command to run, as a list, e.g. [python, publish.py]")
        for key in ("command", "args"):
            items = body.get(key, [])
            if not isinstance(items, list):
                self.fail(f"{path}.{key}", "expected a list of strings")
                continue
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    self.fail(f"{path}.{key}[{i}]", f"{item!r} is not a string; quote it, e.g. \"{item}\"")
        env, resources = body.get("env", []), body.get("resources", {})
        if not isinstance(env, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in env):
            self.fail(f"{path}.env", "expected a list of {name, value} (Kubernetes EnvVar)")
        if not isinstance(resources, dict):
            self.fail(f"{path}.resources", "expected Kubernetes ResourceRequirements {requests, limits}")

    def component_ref(self, body: Any, path: str) -> ComponentRef | None:
        if not isinstance(body, dict):
            self.fail(path, "expected {uri: <component.yaml>} or {configMap: <name>, key: <file>}")
            return None
        self.unknown(path, body, _COMPONENT_FIELDS)
        uri, config_map, key = body.get("uri"), body.get("configMap"), body.get("key", "component.yaml")
        if (uri is None) == (config_map is None):
            self.fail(path, "give either uri or configMap (with key), not both nor neither")
            return None
        for name, value in (("uri", uri), ("configMap", config_map), ("key", key)):
            if value is not None and (not isinstance(value, str) or not value):
                self.fail(f"{path}.{name}", f"expected a non-empty string, got {value!r}")
                return None
        if uri is not None and "key" in body:
            self.fail(f"{path}.key", "only a configMap has keys; remove it or use configMap")
        return ComponentRef(uri=join_uri(self.base_dir, uri) if uri else None, config_map=config_map, key=key)

    def component(self, ref: ComponentRef | None, path: str) -> Component | None:
        if ref is None or self.components is None:
            return None
        where = f"{path}.component.{'uri' if ref.uri else 'configMap'}"
        try:
            return self.components(ref)
        except ComponentError as error:
            for line in error.errors:
                self.fail(where, f"{ref.uri or f'{ref.config_map}/{ref.key}'}: {line}")
        except OSError as error:
            self.fail(where, f"cannot read the component: {error}")
        return None

    def depends_on(self, value: Any, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, "expected a list of step names")
            return []
        for i, name in enumerate(value):
            if name in value[:i]:
                self.fail(f"{path}[{i}]", f"{name!r} is given twice")
        return value

    # -- the steps together ------------------------------------------------------------

    def link(self, drafts: list[_Draft], parameters: dict[str, Any], known: dict[str, Any]) -> list[Step]:
        """Check names, dependencies and expressions across steps; fill in each step's needs.

        `known` are the values known before the run: parameters, run name and workdir.
        """
        by_name: dict[str, Step] = {}  # in spec order; the first of a duplicate name wins
        for draft in drafts:
            first = by_name.setdefault(draft.step.name, draft.step)
            if first is not draft.step:
                self.fail(f"{draft.path}.name", f"{draft.step.name!r} is given twice")
        outputs = {name: self.outputs_of(step) for name, step in by_name.items()}
        order = {name: i for i, name in enumerate(by_name)}
        steps = []
        for draft in drafts:
            step = draft.step
            scope = Scope(parameters=parameters, steps=outputs, run_status=step.is_finally)
            needs = set()
            for i, name in enumerate(draft.depends_on):
                path = f"{draft.path}.dependsOn[{i}]"
                if name not in by_name:
                    self.fail(path, f"{name!r} names no step; " + _suggest(name, by_name))
                elif self.allowed(step, by_name[name], path, via="dependsOn"):
                    needs.add(name)
            for path, ref in locate({step.kind: step.body, "inputs": step.inputs}, draft.path):
                message = problem(ref, scope)
                if message:
                    self.fail(path, message)
                elif ref.step and self.allowed(step, by_name[ref.step], path, via="reference"):
                    needs.add(ref.step)
            if step.kind == "batchInference":
                self.errors += batch.spec_problems(step.body, f"{draft.path}.batchInference", known, self.base_dir)
            if step.component is not None:
                resolved = substitute(dict(step.inputs), known)
                self.errors += [f"{draft.path}.{line}" for line in check_inputs(step.component, resolved)]
            steps.append(dataclasses.replace(step, needs=tuple(sorted(needs, key=order.__getitem__))))
        return steps

    def allowed(self, step: Step, need: Step, path: str, via: str) -> bool:
        """Whether `step` may depend on `need`; a finally step runs after every regular one."""
        if need.is_finally and not step.is_finally:
            self.fail(path, f"{need.name} is a finally step; finally steps run after every other step, "
                      "so no regular step can wait for one")
            return False
        if via == "dependsOn" and step.is_finally and not need.is_finally:
            self.fail(path, f"{need.name} is a regular step; finally steps start once every regular step is over, "
                      "whatever happened, so remove it (use ${{run.status}} to see how the run went)")
            return False
        return True

    def outputs_of(self, step: Step) -> tuple[str, ...] | None:
        """The outputs `${{steps.<step>.outputs.X}}` may name; None while a component is not loaded."""
        if step.kind == "batchInference":
            return batch.OUTPUTS
        if step.kind == "component":
            return tuple(step.component.outputs) if step.component else None
        return ()


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    return did_you_mean(name, known, f"known steps: {', '.join(known)}")
