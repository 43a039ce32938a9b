"""Temporary names: where a write goes before it is published, and the name it was to become."""

from __future__ import annotations

import posixpath
import re
import uuid

TEMPORARY = re.compile(r"^\.tmp-[0-9a-f]{32}-(.+)$")


def temporary_name(path: str) -> str:
    """Where a write of `path` goes first: `.tmp-<uuid>-<name>` in the same folder."""
    return f"{posixpath.dirname(path)}/.tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}"


def public_name(path: str) -> str:
    """A temporary file's name as the file it was to become."""
    folder, name = posixpath.split(path)
    match = TEMPORARY.match(name)
    return posixpath.join(folder, match.group(1)) if match else path
