"""`${{...}}` expressions: found, checked and substituted as text; no code is evaluated.

A pipeline step may use `${{parameters.NAME}}`, `${{steps.STEP.outputs.NAME}}`,
`${{run.name}}`, `${{run.workdir}}`, `${{run.status}}` (finally steps only),
`${{schedule.scheduledTime}}` and `${{trigger.manifest}}` (a PipelineSchedule's template
only: the schedule substitutes them when it creates the run, so a PipelineRun never
carries them); a component's command uses `${{inputs.NAME}}` and `${{outputs.NAME}}`.
Spaces inside the braces are allowed.

Values are keyed by the expression's dotted key ("parameters.maxIter"). A string that
is one whole expression becomes the value itself, type included (`"${{parameters.maxIter}}"`
→ 500); inside a longer string the value is text (true/false for booleans). An
expression with no value stays as written, so a spec can be resolved in stages.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..problems import did_you_mean

EXPRESSION = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_KEYS = {
    "parameters": re.compile(rf"^parameters\.({_NAME})$"),
    "steps": re.compile(rf"^steps\.({_NAME})\.outputs\.({_NAME})$"),
    "run": re.compile(r"^run\.(name|workdir|status)$"),
    "schedule": re.compile(r"^schedule\.(scheduledTime)$"),
    "trigger": re.compile(r"^trigger\.(manifest)$"),
    "inputs": re.compile(rf"^inputs\.({_NAME})$"),
    "outputs": re.compile(rf"^outputs\.({_NAME})$"),
}
_PIPELINE_FORMS = ("${{parameters.NAME}}", "${{steps.STEP.outputs.NAME}}", "${{run.name}}", "${{run.workdir}}",
                   "${{run.status}}", "${{schedule.scheduledTime}}", "${{trigger.manifest}}")
_COMPONENT_FORMS = ("${{inputs.NAME}}", "${{outputs.NAME}}")


@dataclass(frozen=True)
class Ref:
    """One expression: `text` as written, `key` the dotted name inside the braces."""

    text: str
    key: str

    @property
    def scope(self) -> str | None:
        """parameters, steps, run, schedule, trigger, inputs or outputs; None when malformed."""
        for scope, pattern in _KEYS.items():
            if pattern.match(self.key):
                return scope
        return None

    @property
    def names(self) -> tuple[str, ...]:
        """The names the key is made of, e.g. ("train", "model") for steps.train.outputs.model."""
        scope = self.scope
        match = _KEYS[scope].match(self.key) if scope else None  # it matches: that is how scope found it
        return match.groups() if match else ()

    @property
    def step(self) -> str | None:
        return self.names[0] if self.scope == "steps" else None


@dataclass(frozen=True)
class Scope:
    """What one place may refer to.

    `steps` maps each step to the outputs `${{steps.S.outputs.X}}` may name (None: not
    known yet, any name is taken). `inputs`/`outputs` are set inside components only.
    """

    parameters: Collection[str] = ()
    steps: Mapping[str, Collection[str] | None] = field(default_factory=dict)
    run_status: bool = False
    inputs: Collection[str] | None = None
    outputs: Collection[str] | None = None

    @property
    def in_component(self) -> bool:
        return self.inputs is not None


def find(text: str) -> list[Ref]:
    """Every expression in a string, in order."""
    return [Ref(m.group(0), m.group(1)) for m in EXPRESSION.finditer(text)]


def locate(obj: Any, path: str = "") -> Iterator[tuple[str, Ref]]:
    """(path, expression) for every expression in every string of nested dicts and lists."""
    if isinstance(obj, str):
        for ref in find(obj):
            yield path, ref
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from locate(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from locate(value, f"{path}[{index}]")


def references(obj: Any) -> set[str]:
    """The steps whose outputs `obj` uses: its dependencies."""
    return {ref.step for _, ref in locate(obj) if ref.step}


def problem(ref: Ref, scope: Scope) -> str | None:
    """Why `ref` cannot be used where `scope` applies ("problem; fix"), or None."""
    kind = ref.scope
    forms = _COMPONENT_FORMS if scope.in_component else _PIPELINE_FORMS
    if kind is None:
        return f"{ref.text} is not an expression parallelrun knows; use one of {', '.join(forms)}"
    if scope.in_component != (kind in ("inputs", "outputs")):
        if scope.in_component:
            return (f"{ref.text}: a component sees only its inputs and outputs; declare an input "
                    "and pass the value to it from the pipeline step")
        return (f"{ref.text} belongs in a component's command; a pipeline step uses "
                "${{parameters.NAME}} or ${{steps.STEP.outputs.NAME}}")
    if kind in ("schedule", "trigger"):
        return (f"{ref.text} is set by a PipelineSchedule when it creates the run; use it only in a "
                "PipelineSchedule's spec.template")
    name = ref.names[0]
    if kind == "parameters" and name not in scope.parameters:
        return f"{ref.text} names no parameter; {_known('declare it under spec.parameters', name, scope.parameters)}"
    if kind == "steps":
        if name not in scope.steps:
            return f"{ref.text} names no step; {_known('use a step name', name, scope.steps)}"
        outputs, output = scope.steps[name], ref.names[1]
        if outputs is not None and output not in outputs:
            if not outputs:
                return f"{ref.text}: step {name} has no outputs; only batchInference and component steps have outputs"
            known = _known("use one of its outputs", output, outputs)
            return f"{ref.text}: step {name} has no output {output!r}; {known}"
    if ref.key == "run.status" and not scope.run_status:
        return f"{ref.text} is known only once the steps are over; use it in a step under spec.finally"
    if kind in ("inputs", "outputs"):
        declared = scope.inputs if kind == "inputs" else scope.outputs
        assert declared is not None  # in a component (checked above), which declares both
        if name not in declared:
            return f"{ref.text} names no {kind[:-1]}; {_known(f'declare it under {kind}', name, declared)}"
    return None


def _known(fix: str, name: str, known: Collection[str]) -> str:
    return did_you_mean(name, known, f"{fix} (known: {', '.join(known)})" if known else fix)


def as_text(value: Any) -> str:
    """A value as it reads inside a longer string or a command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(obj: Any, values: Mapping[str, Any]) -> Any:
    """A copy of `obj` with every expression that has a value replaced (see the module doc)."""
    if isinstance(obj, str):
        whole = EXPRESSION.fullmatch(obj)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return EXPRESSION.sub(lambda m: as_text(values[m.group(1)]) if m.group(1) in values else m.group(0), obj)
    if isinstance(obj, dict):
        return {key: substitute(value, values) for key, value in obj.items()}
    if isinstance(obj, list):
        return [substitute(value, values) for value in obj]
    return obj
