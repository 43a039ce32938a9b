"""A step made concrete: expressions substituted, outputs placed, fingerprint taken.

`resolve_step` is what local mode and the operator call when a step is about to start
(`dag.advance` said so). It is pure: storage is reached only through its arguments
(the component file's text, a function that digests a code folder).

Decisions:

- A component output's default URI is `<run.workdir>/<step>/<output>/` for a
  `uri_folder` and `<run.workdir>/<step>/<output>` (no slash: a file of that name) for a
  `uri_file`; a pipeline step cannot move them. A batchInference step's outputs are
  `output`, its `output.uri`, and `outputFile`, that folder's `fileName`.
- `kind` says what runs: `batchInference` (a batchInference step, or a component of
  `type: parallel`: `job` is its normalized BatchInferenceJob spec), `container` (`command`
  is the argument list, `command` and `args` together) or `component` (`command` is the
  component's command, with `${{inputs.X}}`/`${{outputs.Y}}` left for `render`, since the
  step runner gives remote outputs as local paths).
- A component input not given takes its default; an optional one with neither is empty text.
  A relative `uri_folder`/`uri_file` value a step gives is relative to the pipeline file.
- In a `sh -c` command string every value is quoted with `shlex.quote`; in an argument
  list each value is one argument as it is. Either way no value is ever shell code.
- The fingerprint (`reuse.fingerprint`) leaves out the step's name, run, retries, reuse
  flag, working folder and its own outputs' default places: a later run of the same
  pipeline (another run name, so another `${{run.workdir}}`) reuses a step whose spec,
  inputs (upstream outputs included), component file and code are unchanged. It takes
  in the fingerprints of the steps it needs (`upstream`): an output's URI stays the same
  when the step that writes it runs again with other inputs, its content does not.
- `${{schedule.scheduledTime}}` and `${{trigger.manifest}}` are substituted by the
  PipelineSchedule that makes the run (load_pipeline refuses them in a PipelineRun). A
  component input of the wrong type once substituted is a ResolveError.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from ..contract import URI_SCHEME
from ..spec import API_VERSION, KIND, SpecError, load_spec
from .component import Component, check_inputs
from .expressions import as_text, locate, substitute
from .resolved import ResolvedStep, ResolveError, io_values
from .reuse import fingerprint
from .spec import ComponentRef, PipelineSpec, Step
from .uris import join_uri
from .values import URI_TYPES

_JOB_URIS = (("input", "uri"), ("input", "manifest"), ("model", "uri"), ("code", "uri"), ("output", "uri"))
_NOT_FINGERPRINTED = ("name", "run", "retries", "reuse", "cwd", "fingerprint", "outputs", "format")

CodeDigest = Callable[[str], "str | None"]  # a code location (a folder or file URI, or "configMap:NAME") → its digest


def component_outputs(run_workdir: str, step: str, types: Mapping[str, str]) -> dict[str, str]:
    """The default URI of each component output (see the module doc)."""
    base = f"{run_workdir.rstrip('/')}/{step}"
    return {name: f"{base}/{name}" + ("/" if kind == "uri_folder" else "") for name, kind in types.items()}


def job_outputs(job: Mapping[str, Any]) -> dict[str, str]:
    """A normalized BatchInferenceJob spec's outputs: `output` (the folder) and `outputFile`."""
    folder = job["output"]["uri"]
    return {"output": folder, "outputFile": f"{folder.rstrip('/')}/{job['output']['fileName']}"}


def component_base_dir(ref: ComponentRef) -> str | None:
    """The folder relative URIs in a component file are taken from; None for a ConfigMap."""
    if ref.uri is None:
        return None
    return posixpath.dirname(ref.uri) if URI_SCHEME.match(ref.uri) else os.path.dirname(ref.uri)


def values_for(spec: PipelineSpec, finished_outputs: Mapping[str, Mapping[str, str]],
               run_status: str | None = None) -> dict[str, Any]:
    """The expression values a step may use: parameters, run, finished steps' outputs, run status."""
    values = spec.values()
    for step, outputs in finished_outputs.items():
        values.update({f"steps.{step}.outputs.{name}": uri for name, uri in outputs.items()})
    if run_status is not None:
        values["run.status"] = run_status
    return values


def resolve_step(spec: PipelineSpec, step: Step, finished_outputs: Mapping[str, Mapping[str, str]],
                 run_status: str | None = None, *, component_text: bytes | None = None,
                 code_digest: CodeDigest | None = None, upstream: Mapping[str, str] | None = None) -> ResolvedStep:
    """`step` of `spec` ready to run.

    `finished_outputs`: each finished step's outputs (name → URI), as `resolve_step`
    gave them or as the reuse index recorded them. `run_status` is `${{run.status}}`
    (finally steps). `component_text` is the component file's bytes and `code_digest`
    digests a code location (`reuse.folder_digest` over storage, say); both go into the
    fingerprint. `upstream` maps finished steps to their fingerprints: those of the steps
    this one needs count too, so a step after one that ran with other inputs runs again
    even though its input URIs did not change. A component step needs `step.component`
    loaded (load_pipeline with a resolver). Raises ResolveError for what cannot be known before now.
    """
    values = values_for(spec, finished_outputs, run_status)
    body = substitute({step.kind: step.body, "inputs": dict(step.inputs)}, values)
    path = f"steps.{step.name}"
    errors = [f"{path}.{where}: {_unresolved(ref.key)}" for where, ref in locate(body)]
    if errors:
        raise ResolveError(errors)
    common = {"name": step.name, "run": spec.name, "retries": step.retries, "reuse": step.reuse,
                  "storage": dict(spec.storage)}
    if step.kind == "batchInference":
        resolved = _job_step(body["batchInference"], spec.base_dir, path + ".batchInference", common)
    elif step.kind == "container":
        resolved = _container_step(body["container"], spec.base_dir, common)
    elif step.component is None:
        raise ResolveError([f"{path}.component: the component is not loaded; load the pipeline with a resolver"])
    else:
        resolved = _component_step(step.component, step.component_ref, body["inputs"], spec, path, common)
    location = _code_location(resolved)
    digest = code_digest(location) if code_digest and location else None
    payload = {k: v for k, v in resolved.items() if k not in _NOT_FINGERPRINTED}
    payload["after"] = {need: (upstream or {}).get(need) for need in step.needs}
    if step.kind == "batchInference":
        payload["outputs"] = resolved["outputs"]  # where a job writes is part of its spec
    elif step.component is not None and step.component.type == "parallel":
        # its outputs' default places are left out, as a command component's are
        payload["job"] = substitute(step.component.batch_inference, io_values(resolved["inputs"], {}))
    return ResolvedStep(**resolved, fingerprint=fingerprint(payload, component_text, digest))


def _unresolved(key: str) -> str:
    if key.startswith("steps."):
        return f"${{{{{key}}}}} has no value: that step did not succeed, so its outputs do not exist"
    return f"${{{{{key}}}}} has no value here"


def _job_step(body: dict, base_dir: str | None, path: str, common: dict, **extra: Any) -> dict:
    """A BatchInferenceJob spec, checked and normalized (relative URIs made absolute)."""
    job = _joined(body, base_dir)
    if not job.get("storage") and common["storage"]:
        job["storage"] = common["storage"]
    resource = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": common["name"]}, "spec": job}
    try:
        normalized = load_spec(resource).to_dict()
    except SpecError as error:
        raise ResolveError([path + line.removeprefix("spec") for line in error.errors]) from None
    return {**common, **extra, "kind": "batchInference", "job": normalized, "image": normalized.get(
        "environment", {}).get("image"), "storage": normalized.get("storage", {}), "outputs": job_outputs(normalized)}


def _joined(job: dict, base_dir: str | None) -> dict:
    """`job` with its relative URIs taken from `base_dir`, which may be a URL (a component on az://)."""
    def join(value: Any) -> Any:
        return join_uri(base_dir, value) if isinstance(value, str) and value else value

    job = {key: dict(value) if isinstance(value, dict) else value for key, value in job.items()}
    for section, key in _JOB_URIS:
        if isinstance(job.get(section), dict) and key in job[section]:
            job[section][key] = join(job[section][key])
    if isinstance(job.get("sideInputs"), list):
        job["sideInputs"] = [{**s, "uri": join(s.get("uri"))} if isinstance(s, dict) else s for s in job["sideInputs"]]
    return job


def _container_step(body: dict, base_dir: str | None, common: dict) -> dict:
    argv = [as_text(v) for v in [*body.get("command", []), *body.get("args", [])]]
    return {**common, "kind": "container", "command": argv, "image": body.get("image"),
            "env": [dict(e) for e in body.get("env", [])], "resources": dict(body.get("resources", {})),
            "cwd": base_dir, "outputs": {}}


def _component_step(component: Component, ref: ComponentRef | None, given: dict, spec: PipelineSpec,
                    path: str, common: dict) -> dict:
    base_dir, run_workdir = spec.base_dir, spec.run_workdir
    problems = check_inputs(component, given)
    if problems:
        raise ResolveError([f"{path}.{line}" for line in problems])
    inputs = {name: given.get(name, declared.default) for name, declared in component.inputs.items()
              if name in given or declared.default is not None}
    inputs = {name: join_uri(base_dir, value) if component.inputs[name].type in URI_TYPES and name in given else value
              for name, value in inputs.items()}  # a relative URI the pipeline gives is relative to its file
    outputs = component_outputs(run_workdir, common["name"], component.outputs)
    about = {"component": {"name": component.name, "version": component.version},
             "inputs": inputs, "input_types": {n: i.type for n, i in component.inputs.items()},
             "output_types": dict(component.outputs)}
    if component.type == "parallel":
        job = substitute(component.batch_inference, io_values(inputs, outputs))
        resolved = _job_step(job, component_base_dir(ref) if ref else None, f"{path}.component.batchInference",
                             common, **about)
        return {**resolved, "image": resolved["image"] or component.image, "outputs": outputs}
    assert component.command is not None  # load_component requires it of a command component
    command = component.command if isinstance(component.command, str) else list(component.command)
    return {**common, **about, "kind": "component", "command": command, "image": component.image,
            "code": component.code, "outputs": outputs}


def _code_location(resolved: Mapping[str, Any]) -> str | None:
    """Where the step's code is, for its digest: a component's code folder, or a job's entry script
    (a job's code folder may hold its data too; local mode's run id counts the script alone as well)."""
    if resolved.get("code"):
        return resolved["code"]
    code = (resolved.get("job") or {}).get("code") or {}
    if code.get("uri"):
        return f"{code['uri'].rstrip('/')}/{code['entryScript']}"
    return f"configMap:{code['configMap']}" if code.get("configMap") else None
