"""What `parallelrun validate` checks beyond the schema: that the job's files are there and its script compiles.

A spec can be valid and still unable to start (a typo in the input path, an entry
script that is not in the code folder). Each problem is one "field: problem; fix" line,
like SpecError's, so validate reports them the same way.
"""

from __future__ import annotations

import posixpath

from .spec import JobSpec
from .storage import filesystem, storage_error


def missing_files(spec: JobSpec) -> list[str]:
    """Problems with the paths the job reads: input, code, model, side inputs."""
    problems = []
    checks = [("spec.input.manifest", spec.input.manifest, "the input manifest") if spec.input.manifest
              else ("spec.input.uri", spec.input.source, "the input")]  # the uri, there being no manifest
    if spec.code.uri:
        checks.append(("spec.code.entryScript", posixpath.join(spec.code.uri.rstrip("/"), spec.code.entry_script),
                       f"the entry script (in code.uri {spec.code.uri})"))
    if spec.model_uri:
        checks.append(("spec.model.uri", spec.model_uri, "the model"))
    checks += [(f"spec.sideInputs[{i}].uri", s.uri, f"side input {s.name}") for i, s in enumerate(spec.side_inputs)]
    for field, uri, what in checks:
        try:
            fs, path = filesystem(uri)
            if not fs.exists(path):
                problems.append(f"{field}: {uri} does not exist; fix the path of {what}")
        except Exception as e:  # noqa: BLE001 - any reason it cannot be reached is a finding
            cause = storage_error(e, uri) or f"{type(e).__name__}: {e}"
            problems.append(f"{field}: cannot check {uri}: {cause}; validate the spec alone with --no-check")
    return problems


def script_problems(spec: JobSpec) -> list[str]:
    """The entry script in code.uri compiled, as Python would when a worker imports it:
    a syntax error is found before any worker starts."""
    if not spec.code.uri:
        return []  # a ConfigMap or the image: not readable here
    uri = posixpath.join(spec.code.uri.rstrip("/"), spec.code.entry_script)
    try:
        fs, path = filesystem(uri)
        source = fs.cat_file(path)
    except Exception:  # noqa: BLE001 - missing_files() reports what cannot be read
        return []
    try:
        compile(source, uri, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        lineno = getattr(e, "lineno", None)  # a SyntaxError's
        where = f" line {lineno}" if lineno else ""
        return [f"spec.code.entryScript: {spec.code.entry_script}{where}: {getattr(e, 'msg', e)}; fix the script"]
    return []
