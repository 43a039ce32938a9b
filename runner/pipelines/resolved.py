"""A resolved step: what `resolve.resolve_step` gives and the step runner runs, and its JSON form.

Light on purpose (no storage, no pipeline loading): the step runner imports this to run
a step, in a pod as on a laptop. See resolve.py for how a step
is resolved and what each field holds.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..spec import SpecError
from .expressions import EXPRESSION, as_text

FORMAT = 1  # the JSON form's version (`format`), bumped when a field changes meaning


class ResolveError(SpecError):
    """A step that cannot start as written; `.errors` has one "path: problem; fix" line each."""

    what = "step"


@dataclass(frozen=True)
class ResolvedStep:
    """Everything needed to run one step, with no expression left but a component's own."""

    name: str
    kind: str  # batchInference | container | component (see the module doc)
    run: str  # the run's name
    outputs: Mapping[str, str]  # output name → URI
    fingerprint: str
    output_types: Mapping[str, str] = field(default_factory=dict)  # uri_folder | uri_file
    job: dict | None = None  # batchInference: the normalized BatchInferenceJob spec
    command: str | list[str] | None = None  # container: argv; component: its command, inputs/outputs unrendered
    inputs: Mapping[str, Any] = field(default_factory=dict)  # component: every input's value
    input_types: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    code: str | None = None  # component: its code folder's URI
    env: list[dict] = field(default_factory=list)  # container: Kubernetes EnvVars
    resources: dict = field(default_factory=dict)  # container: Kubernetes ResourceRequirements
    storage: dict = field(default_factory=dict)  # {secretRef: {name}}: the step's, else the pipeline's
    retries: int = 0
    reuse: bool = True
    cwd: str | None = None  # local mode: the pipeline file's folder, where a container step runs
    component: dict | None = None  # {name, version}

    def render(self, inputs: Mapping[str, Any] | None = None, outputs: Mapping[str, str] | None = None) -> list[str]:
        """The argument list to run: a component's inputs and outputs put in (default: as resolved).

        The step runner passes local paths for remote inputs and outputs. A string
        command becomes `sh -c <command>` with every value quoted.
        """
        if self.command is None:
            raise ValueError(f"step {self.name} runs a BatchInferenceJob, not a command")
        values = io_values(self.inputs if inputs is None else inputs, self.outputs if outputs is None else outputs)
        if isinstance(self.command, str):
            return ["sh", "-c", _render(self.command, values, shlex.quote)]
        return [_render(arg, values, str) for arg in self.command]

    def to_dict(self) -> dict:
        """The JSON form (camelCase), as a component step's pod reads it."""
        raw = asdict(self)
        return {"format": FORMAT, **{_camel(k): v for k, v in raw.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedStep:
        if data.get("format") != FORMAT:
            raise ResolveError([f"format: {data.get('format')!r} is not a resolved step of format {FORMAT}; "
                                "resolve it with this version of parallelrun"])
        names = {_camel(f): f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(names) - {"format"})
        if unknown:
            raise ResolveError([f"{key}: unknown field of a resolved step" for key in unknown])
        return cls(**{names[k]: v for k, v in data.items() if k in names})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _render(text: str, values: Mapping[str, Any], quote: Callable[[str], str]) -> str:
    def one(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:  # load_component checked every name; an optional input with no value
            return quote("") if key.startswith("inputs.") else match.group(0)
        return quote(as_text(values[key]))
    return EXPRESSION.sub(one, text)


def io_values(inputs: Mapping[str, Any], outputs: Mapping[str, str]) -> dict[str, Any]:
    return {**{f"inputs.{k}": v for k, v in inputs.items()}, **{f"outputs.{k}": v for k, v in outputs.items()}}
