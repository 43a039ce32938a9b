"""OpenAI Batch JSONL input checked when it is planned: every custom_id once in the whole input.

A custom_id names its request's output line; one given twice makes two lines that no
reader can tell apart. OpenAI's batch API refuses such a file before it runs, and so
does the plan. A line without one, or not JSON, is left to the scorer, which fails that
line alone. The input is read once, line by line (decompressed where it is compressed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .formats import compression_of, decompressed


class DuplicateCustomId(ValueError):
    """A custom_id given twice: the message names both places and the fix."""


def check_unique(fs, base: str, root: str, rels: Iterable[str]) -> None:
    """Raise DuplicateCustomId for the first custom_id met twice in the files `rels` (under `base`)."""
    seen: dict[str, tuple[str, int]] = {}
    for rel in rels:
        for number, custom_id in _custom_ids(fs, f"{base}/{rel}", rel):
            if custom_id in seen:
                where, line = seen[custom_id]
                raise DuplicateCustomId(
                    f"custom_id {custom_id!r} is given twice: {root}{where} line {line} and {root}{rel} line "
                    f"{number}; give every request a unique custom_id")
            seen[custom_id] = (rel, number)


def _custom_ids(fs, path: str, rel: str) -> Iterable[tuple[int, str]]:
    """(line number, custom_id) of the lines that have one as a string."""
    compression = compression_of(rel)
    with fs.open(path, "rb") as raw:
        f = decompressed(raw, compression) if compression else raw
        for number, line in enumerate(f, 1):
            if b"custom_id" not in line:
                continue
            try:
                custom_id = json.loads(line).get("custom_id")
            except (ValueError, AttributeError):  # not JSON, or not an object: the scorer fails it alone
                continue
            if isinstance(custom_id, str):
                yield number, custom_id
