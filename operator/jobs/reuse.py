"""`allowReuse` on the cluster: a BatchInferenceJob whose spec and code match a succeeded run is
not run again (runner/runs.py `reusable`, as local mode).

The key is the spec's fingerprint with a digest of its code (the ConfigMap's data, or the
folder at code.uri). When a run with `allowReuse` succeeds, an entry of the reuse index
(runner/pipelines/reuse.py) under `<output.uri>/_parallelrun/cache/` names its run id.
A later run with the same key reuses it when local mode's checks pass: that run
succeeded, its output is still there and its input, model and side inputs are
unchanged since it was planned. These functions do blocking storage I/O: the
reconciler runs them in a thread.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from parallelrun.runner.layout import Layout
from parallelrun.runner.pipelines import reuse
from parallelrun.runner.records import RunSummary
from parallelrun.runner.runs import reusable
from parallelrun.runner.spec import JobSpec
from parallelrun.runner.storage import filesystem


def reuse_key(spec: JobSpec, code: Mapping[str, str] | None, env: Mapping[str, str]) -> str:
    """The spec's fingerprint and its code's: `code` is the ConfigMap's data, else code.uri is read."""
    digest: str | None
    if code is not None:
        digest = reuse.fingerprint({"data": dict(code)}, None, None)
    elif spec.code.uri:
        fs, path = filesystem(spec.code.uri, env)
        digest = reuse.folder_digest(fs, path) if fs.exists(path) else None
    else:
        digest = None  # the code is baked into the image, whose name is in the spec
    return reuse.fingerprint({"job": spec.to_dict()}, None, digest)


def find_reusable(spec: JobSpec, key: str, env: Mapping[str, str]) -> RunSummary | None:
    """The summary of a succeeded run with this key that can stand for this one, or None."""
    fs, out = filesystem(spec.output.uri, env)
    entry = reuse.read_entry(fs, out, key)
    if entry is None:
        return None
    return reusable(spec, fs, Layout(out, entry.run, spec.output.format))


def record_success(spec: JobSpec, key: str, run_id: str, name: str, output: str, env: Mapping[str, str]) -> None:
    """The index entry of a succeeded run, for later runs with the same key."""
    fs, out = filesystem(spec.output.uri, env)
    reuse.write_entry(fs, out, reuse.index_entry(key, {"output": output}, run_id, name,
                                                 datetime.datetime.now(datetime.timezone.utc)))
