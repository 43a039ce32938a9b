"""Reuse of a step's earlier result (Azure ML's allow_reuse, Kubeflow's caching).

A step's fingerprint is the hash of its resolved spec (expressions substituted, so
parameters, upstream outputs and `${{run.workdir}}` all count), its component file and
its code. After a step succeeds, an entry (records.ReuseEntry: fingerprint, outputs,
run, step, finishedAt) is written to `<workdir>/_parallelrun/cache/<fingerprint>.json`, where
local mode and the cluster both find it. A later step with the same fingerprint whose
outputs still exist is not run: it is Reused, with the entry's outputs.

Reuse tracks specs, not the data behind a URI: new files under an unchanged input URI
go unnoticed (as in Azure ML and Kubeflow). Put what changes (a date, a manifest) in a
parameter or the URI, or set `reuse: false`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from fsspec import AbstractFileSystem

from ..records import ReuseEntry

CACHE_FOLDER = "_parallelrun/cache"
_FORMAT = 1  # bump when the fingerprint's inputs change, so old entries stop matching
_NOT_RESULT_FIELDS = ("name", "dependsOn", "retries", "reuse")  # they do not change what a step produces
_NOT_CODE = ("__pycache__", "_parallelrun")


def fingerprint(resolved_step: Mapping[str, Any], component_text: bytes | None, code_digest: str | None) -> str:
    """sha256 of canonical JSON: the same for the same step whatever its key order."""
    payload = {
        "format": _FORMAT,
        "step": {k: v for k, v in resolved_step.items() if k not in _NOT_RESULT_FIELDS},
        "component": hashlib.sha256(component_text).hexdigest() if component_text is not None else None,
        "code": code_digest,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def decide(fingerprint: str, index_entry: ReuseEntry | None, outputs_exist: bool, reuse: bool) -> bool:
    """Whether to reuse: allowed, an entry for this very fingerprint, and its outputs still there."""
    return reuse and index_entry is not None and index_entry.fingerprint == fingerprint and outputs_exist


def index_path(workdir: str, fingerprint: str) -> str:
    return f"{workdir.rstrip('/')}/{CACHE_FOLDER}/{fingerprint}.json"


def index_entry(fingerprint: str, outputs: Mapping[str, str], run: str, step: str, finished_at: datetime,
                execution: str | None = None) -> ReuseEntry:
    return ReuseEntry(fingerprint, dict(outputs), run, step,
                      finished_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), execution)


def read_entry(fs: AbstractFileSystem, workdir: str, fingerprint: str) -> ReuseEntry | None:
    """The index entry, or None when there is none or it is unreadable (then the step just runs)."""
    try:
        return ReuseEntry.from_dict(json.loads(fs.cat_file(index_path(workdir, fingerprint))))
    except (FileNotFoundError, ValueError):
        return None


def write_entry(fs: AbstractFileSystem, workdir: str, entry: ReuseEntry) -> None:
    path = index_path(workdir, entry.fingerprint)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, json.dumps(entry.to_dict(), sort_keys=True, indent=1).encode())


def outputs_exist(fs: AbstractFileSystem, outputs: Mapping[str, str]) -> bool:
    return all(fs.exists(uri) for uri in outputs.values())


def folder_digest(fs: AbstractFileSystem, path: str) -> str:
    """A digest of the names and contents of every file under `path` (a step's code).

    Python's caches and parallelrun's own `_parallelrun` folders are left out.
    """
    root = fs._strip_protocol(path).rstrip("/")
    digest = hashlib.sha256()
    for file in sorted(fs.find(root)):
        relative = posixpath.relpath(file, root) if file != root else posixpath.basename(file)
        if set(relative.split("/")) & set(_NOT_CODE) or relative.endswith(".pyc"):
            continue
        digest.update(relative.encode() + b"\0" + hashlib.sha256(fs.cat_file(file)).digest())
    return digest.hexdigest()
