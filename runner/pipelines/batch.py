"""A BatchInferenceJob spec inside a pipeline step or a parallel component.

Its outputs, for `${{steps.STEP.outputs.NAME}}`: `output` is the job's output folder
(`output.uri`), `outputFile` the merged file in it (`output.uri` + `output.fileName`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parallelrun.runner.spec import API_VERSION, KIND, SpecError, load_spec

from .expressions import substitute

OUTPUTS = ("output", "outputFile")


def spec_problems(body: Any, path: str, values: Mapping[str, Any], base_dir: str | None) -> list[str]:
    """Every problem of the spec `body` as `load_spec` sees it, blamed on fields under `path`.

    `values` are substituted first (parameters, or placeholders of a component's inputs);
    expressions left over are strings, as every other value an expression can take is
    (URIs, names, the run's status), so a field expecting a number rejects them.
    """
    if not isinstance(body, dict):
        return [f"{path}: expected a BatchInferenceJob spec (a mapping with input, code and output)"]
    resource = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "step"},
                "spec": substitute(body, values)}
    try:
        load_spec(resource, base_dir=base_dir)
    except SpecError as error:
        return [path + line.removeprefix("spec") for line in error.errors]
    return []
