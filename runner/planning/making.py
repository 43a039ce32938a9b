"""Making a run's plan: the input listed, cut into mini-batches and shards (make_plan), written once
or read back and checked against the input (ensure_plan)."""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from stat import S_ISFIFO, S_ISREG, S_ISSOCK
from typing import TYPE_CHECKING

from ..formats import raw_lines
from ..layout import Layout
from ..schemas import to_header
from ..spec import JobSpec
from ..storage import filesystem, is_local, strip_protocol, write_atomic
from .cutting import RowGroupRows, parquet_batches, partition_batches, text_batches
from .listing import list_files
from .model import FileBatches, InputChanged, InputFile, Listing, MiniBatch, Plan, PlanError
from .shards import shard
from .sources import input_changes, source_versions
from .store import read_plan, write_plan

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


def make_plan(spec: JobSpec, env: Mapping[str, str] | None = None) -> Plan:
    """List and cut the input of `spec` into mini-batches and shards."""
    root, listing = list_files(spec, env)
    if spec.input.type == "files":
        files_batches = FileBatches(listing, spec.mini_batch_size.value)
        return Plan(input_uri=root, input_type="files", input_format=None, options=dict(spec.input.options),
                    shards=shard(files_batches, spec.node_count), total_mini_batches=len(files_batches),
                    total_items=len(listing), total_bytes=sum(listing.sizes), mini_batches=files_batches,
                    sources=source_versions(spec, env))
    fmt = spec.input.format
    assert fmt is not None  # tabular input has a format
    files = _with_rows(root, listing.files(), env)
    listing = Listing.of(files)  # without the entries that hold no rows
    fs, base = filesystem(root, env)
    typed = spec.input.format in ("csv", "jsonl") and not raw_lines(spec.input.options)
    types = _text_schema(spec, fs, root, base, listing) if typed else None
    if spec.code.openai:
        _check_custom_ids(fs, root, base, listing)
    batches: list[MiniBatch] = []
    if spec.partition_keys:
        batches, schema = partition_batches(spec, root, files, env, types)
    else:
        schema, row_groups = types, RowGroupRows()
        cut: Callable[..., Iterable[MiniBatch]] = \
            functools.partial(parquet_batches, row_groups=row_groups) if fmt == "parquet" else text_batches
        for f in files:
            try:
                batches.extend(cut(spec, fs, f"{base}/{f.rel}", f.rel, f.size))
            except (OSError, ValueError) as e:
                raise PlanError(f"spec.input: cannot read {root}{f.rel} as {spec.input.format}: {e}") from e
        if spec.input.format == "parquet":
            schema = row_groups.unified(fs, base, root, listing.rels)
    stamps = {f.rel: (f.size, f.version) for f in files}
    mini_batches: list[MiniBatch] = []
    first_row: int | None = 0  # None from the first mini-batch whose rows only reading tells
    for i, b in enumerate(batches):
        mini_batches.append(dataclasses.replace(b, id=i, stamps=tuple(x for p in b.paths for x in stamps[p]),
                                                first_row=first_row))
        first_row = None if first_row is None or b.items is None else first_row + b.items
    counted = [b.items for b in mini_batches]
    items = None if None in counted else sum(n for n in counted if n is not None)
    return Plan(input_uri=root, input_type=spec.input.type, input_format=spec.input.format,
                options=dict(spec.input.options), shards=shard(mini_batches, spec.node_count),
                total_mini_batches=len(mini_batches), total_items=items,
                total_bytes=sum(b.size for b in mini_batches), mini_batches=mini_batches,
                sources=source_versions(spec, env), schema=to_header(schema) if schema is not None else None)


def _check_custom_ids(fs, root: str, base: str, listing: Listing) -> None:
    """OpenAI Batch JSONL: every custom_id once (custom_ids.py)."""
    from ..custom_ids import DuplicateCustomId, check_unique

    try:
        check_unique(fs, base, root, listing.rels)
    except DuplicateCustomId as e:
        raise PlanError(f"spec.input: {e}") from None
    except (OSError, ValueError) as e:
        raise PlanError(f"spec.input: cannot read {root} as OpenAI Batch JSONL: {e}") from e


def _text_schema(spec: JobSpec, fs, root: str, base: str, listing: Listing) -> pa.Schema:
    """The column types of a csv/jsonl input (column_types.py)."""
    from ..column_types import infer

    assert spec.input.format is not None  # tabular input has a format
    try:
        return infer(spec.input.format, spec.input.options, fs, base, listing.rels, listing.sizes)
    except (OSError, ValueError) as e:
        raise PlanError(f"spec.input: cannot infer the column types of {root} as {spec.input.format}: {e}") from e


def _with_rows(root: str, files: list[InputFile], env: Mapping[str, str] | None) -> list[InputFile]:
    """Tabular input: the files that may hold rows. A local entry the listing could not stamp
    (a dangling link, a link in a loop, a fifo, socket or device) holds none to cut: it is
    skipped with a warning naming it, and the run goes on."""
    if all(f.version is not None for f in files) or not is_local(filesystem(root, env)[0]):
        return files
    base = strip_protocol(root).rstrip("/")
    for f in files:
        if f.version is None:
            log.warning("spec.input.uri: %s/%s skipped: %s, not a file with rows", base, f.rel,
                        _odd_entry(f"{base}/{f.rel}"))
    kept = [f for f in files if f.version is not None]
    if not kept:
        raise PlanError(f"spec.input.uri: no readable input files under {root}")
    return kept


def _odd_entry(path: str) -> str:
    """What a local entry that is no regular file is, in words."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return "a link in a loop" if e.errno == errno.ELOOP else "a dangling link" if os.path.islink(path) \
            else f"unreadable ({e.strerror})"
    return "a fifo" if S_ISFIFO(mode) else "a socket" if S_ISSOCK(mode) else "a device" if not S_ISREG(mode) \
        else "changed while listed"


def ensure_plan(spec: JobSpec, fs, layout: Layout, env: Mapping[str, str] | None = None) -> Plan:
    """The run's plan: the committed one if there is one (a resumed run), else a new one.

    A committed plan is only resumed while the input, model and side inputs are still
    what it was made from; otherwise InputChanged names what changed."""
    existing = read_plan(fs, layout)
    if existing is None:
        plan = make_plan(spec, env)
        write_atomic(fs, layout.spec, json.dumps(spec.to_dict(), indent=1).encode())
        write_plan(plan, fs, layout)
        return plan
    changes = input_changes(spec, existing, fs, layout, env)
    if changes:
        raise InputChanged(f"the input changed since run {layout.run_id} was planned: {'; '.join(changes)}. "
                           "Resuming would mix old and new data; rerun with --fresh to plan it again")
    return existing
