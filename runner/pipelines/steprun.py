"""One container or component step, from its resolved JSON: `python -m parallelrun.runner step --step F.json`.

The same command runs a step in local mode (a subprocess of `parallelrun run`) and in
a pod: the operator's Job for a component step runs it in the component's
`environment.image`, which, like a scoring image, has parallelrun installed (a
container step's Job runs the user's command directly; locally it comes here too).

- The component's code (`code`, any fsspec URI) is copied into a temporary folder and
  the command runs from there, as Azure ML runs it; a step without code runs in its
  `cwd` (local mode: the pipeline file's folder), else in the current folder.
- `uri_folder`/`uri_file` inputs are given as local paths: a local one as it is, a
  remote one downloaded first. A missing input stops the step before it starts.
- Outputs are local paths: a local output is emptied and created (a folder) before the
  command runs; a remote one is a temporary folder or file, uploaded once the command
  succeeded, replacing what an earlier attempt left there.
- The container's `env` values are set for the command; storage credentials come from
  the environment, as runner/storage.py reads them.
- Exit status: the command's (128 + N when signal N ended it); 2 (EXIT_CONFIG) for a
  step that cannot start or whose outputs cannot be uploaded, with one line saying why.
  SIGTERM is passed on to the command, whose exit status then stands.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping

from ..contract import EXIT_CONFIG, SCRATCH_ENV, PermanentError
from .resolved import ResolvedStep, ResolveError
from .values import URI_TYPES


class StepError(PermanentError):
    """The step cannot start, or its outputs cannot be kept; the message is one line."""


def load(path: str) -> ResolvedStep:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise StepError(f"cannot read the resolved step {path}: {error}") from None
    if not isinstance(data, dict):
        raise StepError(f"{path}: expected a resolved step (a JSON object)")
    try:
        return ResolvedStep.from_dict(data)
    except (ResolveError, TypeError) as error:
        raise StepError(f"{path}: {str(error).replace(chr(10), ' ')}") from None


def run_step(step: ResolvedStep, scratch: str) -> int:
    """Run `step`'s command under `scratch` (a folder of its own); its exit status."""
    if step.command is None:
        raise StepError(f"step {step.name} runs a BatchInferenceJob; run it with `parallelrun run` or the operator")
    cwd = _code(step, scratch)
    inputs = {name: _input(name, value, scratch) if step.input_types.get(name) in URI_TYPES else value
              for name, value in step.inputs.items()}
    outputs = {name: _output(name, uri, step.output_types.get(name, "uri_folder"), scratch)
               for name, uri in step.outputs.items()}
    env = {**os.environ, **{e["name"]: str(e["value"]) for e in step.env if "value" in e}}
    status = _execute(step.render(inputs, outputs), cwd, env)
    if status == 0:
        for name, uri in step.outputs.items():
            if outputs[name] != _local_path(uri):
                _upload(outputs[name], uri, step.output_types.get(name, "uri_folder"))
    return status


def _code(step: ResolvedStep, scratch: str) -> str:
    if not step.code:
        return step.cwd if step.cwd and os.path.isdir(step.cwd) else os.getcwd()
    from ..storage import fetch  # fsspec only for steps that move data: a container step starts faster

    try:
        source = fetch(step.code, os.path.join(scratch, "fetched"))
    except FileNotFoundError:
        raise StepError(f"the code of component {_component(step)} is missing: {step.code}") from None
    if not os.path.isdir(source):
        raise StepError(f"the code of component {_component(step)} is not a folder: {step.code}")
    if source.startswith(scratch):  # downloaded: already a copy of its own
        return source
    folder = os.path.join(scratch, "code")
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "_parallelrun"))
    return folder


def _input(name: str, uri: str, scratch: str) -> str:
    from ..storage import fetch

    try:
        return fetch(uri, os.path.join(scratch, "inputs", name))
    except FileNotFoundError:
        raise StepError(f"input {name} is missing: {uri}") from None


def _local_path(uri: str) -> str | None:
    from ..storage import filesystem, is_local

    fs, path = filesystem(uri)
    return path + ("/" if uri.endswith("/") else "") if is_local(fs) else None


def _output(name: str, uri: str, kind: str, scratch: str) -> str:
    """A local path for output `name`: the output itself when local (emptied), else a temporary one."""
    local = _local_path(uri)
    if local is None:
        folder = os.path.join(scratch, "outputs", name)
        local = folder + "/" if kind == "uri_folder" else os.path.join(folder, posixpath.basename(uri) or name)
    path = local.rstrip("/")
    if os.path.isdir(path) and kind == "uri_folder":
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    os.makedirs(path if kind == "uri_folder" else os.path.dirname(path), exist_ok=True)
    return local


def _upload(local: str, uri: str, kind: str) -> None:
    if kind == "uri_file" and not os.path.isfile(local):
        raise StepError(f"output {uri}: the command wrote no file at {local}")
    from ..storage import filesystem, storage_error

    try:
        fs, path = filesystem(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if kind == "uri_folder":
            fs.makedirs(path, exist_ok=True)
            fs.put(local.rstrip("/") + "/", path + "/", recursive=True)
        else:
            fs.put_file(local, path)
    except Exception as error:  # a storage fault in one line, else raised
        fault = storage_error(error, uri, writing=True)
        if fault is None:
            raise
        raise StepError(f"cannot upload output {uri}: {fault}") from None


def _execute(argv: list[str], cwd: str, env: Mapping[str, str]) -> int:
    """Run the command, passing SIGTERM on (one that comes while it starts included); its exit
    status (128 + N for signal N)."""
    started: list[subprocess.Popen] = []
    stopped: list[bool] = []

    def forward(*_) -> None:
        if started:
            started[0].send_signal(signal.SIGTERM)
        else:
            stopped.append(True)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        try:
            child = subprocess.Popen(argv, cwd=cwd, env=dict(env))
        except OSError as error:
            raise StepError(f"cannot start {argv[0]}: {error.strerror}") from None
        started.append(child)
        if stopped:
            child.send_signal(signal.SIGTERM)
        while True:
            try:
                status = child.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached the command too; wait for it to end
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 128 - status if status < 0 else status


def _component(step: ResolvedStep) -> str:
    return f"{step.component['name']} {step.component['version']}" if step.component else step.name


def main(argv: list[str]) -> int:
    """`step --step FILE.json`: the exit status, one line on stderr when the step cannot run."""
    parser = argparse.ArgumentParser(prog="python -m parallelrun.runner step", description=__doc__.split("\n")[0])
    parser.add_argument("--step", required=True, help="the resolved step (JSON, ResolvedStep.to_dict())")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="parallelrun-step-", dir=os.environ.get(SCRATCH_ENV) or None)
    try:
        return run_step(load(args.step), scratch)
    except PermanentError as error:
        print(f"step: {error}", file=sys.stderr)
        return error.exit_code if error.exit_code else EXIT_CONFIG
    except Exception as error:  # a storage fault fetching code or inputs, in one line
        from ..storage import storage_error

        fault = storage_error(error)
        if fault is None:
            raise
        print(f"step: {fault}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":  # local mode's entry: the same as `python -m parallelrun.runner step`, fewer imports
    sys.exit(main(sys.argv[1:]))
