"""A plan in storage: written once (its header, one file of JSON lines per shard), read back by every shard."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..layout import Layout
from ..storage import write_atomic
from .model import FileBatches, MiniBatch, Plan


def plan_lines(mini_batches: Sequence[MiniBatch], start: int, stop: int) -> list[str]:
    """Mini-batches start..stop-1 as their lines of the plan (without newlines)."""
    if isinstance(mini_batches, FileBatches):
        return mini_batches.json_lines(start, stop)
    return [b.to_json() for b in mini_batches[start:stop]]


def _text(lines: list[str]) -> bytes:
    """Lines as a file's bytes, each ending with a newline; `lines` is emptied (its strings are
    freed before the text is encoded: a million of them weigh as much as the text)."""
    if lines:
        lines[-1] += "\n"  # not text + "\n": one copy of the text less
    text = "\n".join(lines)
    lines.clear()
    return text.encode()


def write_plan(plan: Plan, fs, layout: Layout) -> None:
    """Write every shard's mini-batches, then the header: its presence commits the plan."""
    assert plan.mini_batches is not None  # a plan made here, not read back
    for s in plan.shards:
        write_atomic(fs, layout.plan_shard(s.index), _text(plan_lines(plan.mini_batches, s.first, s.first + s.count)))
    write_atomic(fs, layout.plan_header, json.dumps(plan.header(), indent=1).encode())


def read_plan(fs, layout: Layout) -> Plan | None:
    """The committed plan's header, or None when this run has not been planned."""
    try:
        with fs.open(layout.plan_header, "rb") as f:
            return Plan.from_header(json.load(f))
    except FileNotFoundError:
        return None


def read_shard(fs, layout: Layout, index: int) -> list[MiniBatch]:
    with fs.open(layout.plan_shard(index), "rt") as f:
        return MiniBatch.many_from_json([line for line in f if line.strip()])
