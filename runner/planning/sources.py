"""What a plan was made from: the input, model and side inputs, and whether they changed since."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from ..layout import Layout
from ..spec import JobSpec
from ..storage import filesystem
from .listing import file_version, list_input
from .model import Plan
from .store import read_shard


def source_versions(spec: JobSpec, env: Mapping[str, str] | None = None) -> dict:
    """Versions of the model and side inputs, to tell a resumed run that they changed."""
    return {"model": tree_version(spec.model_uri, env) if spec.model_uri else None,
            "sideInputs": {s.name: tree_version(s.uri, env) for s in spec.side_inputs}}


def tree_version(uri: str, env: Mapping[str, str] | None = None) -> str | None:
    """A digest of every file's path, size and version under `uri` (a file or a folder); None if absent."""
    fs, path = filesystem(uri, env)
    try:
        if fs.isfile(path):
            entries = [("", fs.info(path))]
        else:
            prefix = path.rstrip("/") + "/"
            entries = [(p[len(prefix):], info) for p, info in sorted(fs.find(path, detail=True).items())]
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not entries:
        return None
    digest = hashlib.sha256()
    for rel, info in entries:
        digest.update(f"{rel}\0{info.get('size')}\0{file_version(info)}\n".encode())
    return digest.hexdigest()[:16]


def input_changes(spec: JobSpec, plan: Plan, fs, layout: Layout, env: Mapping[str, str] | None = None) -> list[str]:
    """What differs between the input now and when `plan` was made (empty: nothing)."""
    planned: dict[str, tuple] = {}
    for s in plan.shards:
        if s.count:
            for mb in read_shard(fs, layout, s.index):
                if mb.stamps is None:  # a plan written before stamps were recorded
                    return []
                planned.update(zip(mb.paths, zip(mb.stamps[0::2], mb.stamps[1::2])))
    root, files = list_input(spec, env)
    now = {f.rel: (f.size, f.version) for f in files}
    if root != plan.input_uri:  # a manifest now listing files of another folder: compare whole URIs
        planned = {plan.absolute(rel): stamp for rel, stamp in planned.items()}
        now = {root + rel: stamp for rel, stamp in now.items()}
    changed = [f"{rel} ({_difference(planned[rel], now[rel])})" for rel in sorted(planned.keys() & now.keys())
               if tuple(planned[rel]) != now[rel]]
    changes = [_listed(what, names) for what, names in (
        ("changed", changed), ("added", sorted(now.keys() - planned.keys())),
        ("removed", sorted(planned.keys() - now.keys()))) if names]
    return changes + [f"{what} changed" for what in changed_sources(spec, plan.sources, env)]


def changed_sources(spec: JobSpec, planned: dict | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The model and side inputs whose version differs from the plan's. One the planner could
    not see (a path inside the image, a volume of the pods) has no version there: not compared."""
    if planned is None:
        return []
    now = source_versions(spec, env)
    changed = []
    if planned.get("model") is not None and now["model"] != planned["model"]:
        changed.append(f"the model at {spec.model_uri}")
    for name, version in now["sideInputs"].items():
        then = planned.get("sideInputs", {}).get(name)
        if then is not None and version != then:
            changed.append(f"side input {name}")
    return changed


def _difference(then: tuple, now: tuple) -> str:
    return f"size {then[0]:,} → {now[0]:,}" if then[0] != now[0] else "rewritten"


def _listed(what: str, names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most]) + (f" and {len(names) - most:,} more" if len(names) > most else "")
    return f"{len(names):,} {what}: {shown}"
