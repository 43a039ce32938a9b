"""The merge: one output file in plan order, plus summary.json and errors.jsonl.

Runs once every shard has finished (a merge Job on Kubernetes, the last step of local
mode). It walks the plan, not a folder listing: every committed mini-batch with
results must have its part, or the merge fails rather than publish a short output.

Columns are aligned by name across mini-batches: the output has every column any
mini-batch returned, in the order they first appear in plan order; a mini-batch
without a column leaves it empty. In Parquet, a column's types are unified (ints and
floats: floats); types that cannot be (a string in one mini-batch, a number in
another) fail the run, naming the column and both mini-batches. Text formats keep
values as run() wrote them. Parts whose columns already match are concatenated as bytes
(Parquet: their row groups copied, not decoded). `output.layout: dataset` keeps a Parquet
output as a folder of the parts in plan order instead of one file.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import shutil

from .accounting import ALL_ITEMS_FAILED, Counts, all_items_failed, spec_threshold_exceeded
from .commits import Parts, read_commits
from .contract import PermanentError
from .layout import Layout
from .planning import Plan
from .records import DoneRecord, RunSummary, ShardResult
from .reportfiles import write_report
from .schemas import aligned
from .sideoutputs import settle
from .spec import JobSpec
from .storage import is_local, open_atomic, remove_stale_temporaries, write_atomic

_COPY_BUFFER = 8 * 2**20
_SENDFILE_MIN = 2**20  # a smaller part is copied through this process from its group file read once
PREVIOUS_SUFFIX = ".previous"  # where a failed run moves an earlier run's final file
DATASET_MARKER = "_SUCCESS"  # written last into a dataset folder, as Spark does: the folder is whole


class MergeError(PermanentError, RuntimeError):
    """The run cannot be merged: a mini-batch is not committed, a part is missing, columns clash."""


def pod_results(fs, layout: Layout) -> list[ShardResult]:
    """The result of each pod that finished: why it stopped, if a threshold stopped it."""
    try:
        paths = sorted(fs.ls(layout.shards_dir, detail=False))
    except FileNotFoundError:
        return []
    return [ShardResult.from_dict(json.loads(fs.cat_file(p))) for p in paths if p.endswith(".json")]


def range_results(plan: Plan, committed: dict[int, DoneRecord]) -> list[ShardResult]:
    """Each shard range's counts, failed mini-batches and part schemas, from the commit records,
    whichever pods scored its chunks."""
    results = []
    for s in plan.shards:
        r = ShardResult(s.index, Counts())
        schemas: dict[str, int] = {}
        for mb in s.mini_batch_ids:
            done = committed.get(mb)
            if done is None:
                continue
            r.counts.add(done.counts)
            if done.failed:
                r.failed_ids.append(mb)
            if not done.succeeded and done.part is None:  # a part of failed items' rows (outputs.Results) is kept
                r.without_part.append(mb)
                if done.schema and r.empty_schema is None:  # a table without rows: the output's header
                    r.empty_schema = done.schema
            elif done.schema:
                if (k := schemas.setdefault(done.schema, len(schemas))) == len(r.schemas):
                    r.schemas.append(done.schema)
                if k:
                    r.schema_of[mb] = k
        results.append(r)
    return results


# -- which parts, with which columns --------------------------------------------------


def _parts(plan: Plan, results: list[ShardResult]) -> tuple[list[tuple[int, int | None]], list[str], list[int | None]]:
    """The mini-batches with a part, in plan order, each with the index of its schema
    (None: a plain list, no columns); the distinct schemas (schemas.schema_to_text's
    texts, parsed only where they differ); the first mini-batch of each."""
    texts: list[str] = []
    parts: list[tuple[int, int | None]] = []
    first_of: list[int | None] = []
    for s, r in zip(plan.shards, results):
        local = [_global_index(texts, first_of, t) for t in r.schemas]
        without = set(r.without_part)
        for mb in s.mini_batch_ids:
            if mb in without:
                continue
            k = local[r.schema_of.get(mb, 0)] if local else None
            if k is not None and first_of[k] is None:
                first_of[k] = mb
            parts.append((mb, k))
    return parts, texts, first_of


def _global_index(texts: list[str], first_of: list[int | None], text: str) -> int:
    if text not in texts:
        texts.append(text)
        first_of.append(None)
    return texts.index(text)


def _target_schema(schemas: list, first_of: list[int | None], typed: bool):
    """Every column of every part, in order of first appearance, with unified types
    (`typed`) or as text."""
    if not schemas:  # plain lines: no pyarrow to load
        return None
    import pyarrow as pa

    if not typed:
        names = list(dict.fromkeys(name for schema in schemas for name in schema.names))
        return pa.schema([(name, pa.string()) for name in names])
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    seen: dict[str, tuple] = {}  # column → (type, first mini-batch), to name the clash
    for schema, mb in zip(schemas, first_of):
        for field in schema:
            if field.name not in seen:
                seen[field.name] = (field.type, mb)
                continue
            first_type, first_mb = seen[field.name]
            try:
                pa.unify_schemas([pa.schema([(field.name, first_type)]), pa.schema([field])],
                                 promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise MergeError(f"column {field.name!r} is {first_type} in mini-batch {first_mb} but {field.type} "
                                 f"in mini-batch {mb}: run() must return the same type in every mini-batch "
                                 f"(e.g. convert it with df[{field.name!r}].astype(...))") from None
    raise MergeError("the columns of the mini-batches cannot be unified")


# -- writing the output ------------------------------------------------------------------


def write_output(fs, layout: Layout, output_format: str, target: str, plan: Plan,
                 results: list[ShardResult], committed: dict[int, DoneRecord], output_layout: str = "file") -> int:
    """Write the parts of `results` (`committed` says where each lies) into `target` (a file, or
    the folder of a dataset) in plan order; returns its size in bytes.

    Parts of one schema (the usual case) are copied as written, and the schema is not
    even parsed: a merge of such parts loads no pyarrow."""
    stored = Parts(fs, layout, committed)
    parts, texts, first_of = _parts(plan, results)
    if not parts:  # no row: the columns of a table run() returned empty, if any
        texts = [r.empty_schema for r in results if r.empty_schema is not None][:1]
    schemas, schema = [], None  # one schema or none: every part has the output's columns
    if len(texts) > 1:
        from .schemas import schema_from_text

        schemas = [schema_from_text(t) for t in texts]
        schema = _target_schema(schemas, first_of, typed=output_format == "parquet")
    if output_layout == "dataset":
        return _write_dataset(fs, stored, parts, schemas, schema, target)
    remove_stale_temporaries(fs, os.path.dirname(target), os.path.basename(target))
    with open_atomic(fs, target) as out:
        if output_format == "parquet":
            _write_parquet(fs, stored, parts, schemas, schema, texts, out)
        else:
            _write_text(fs, stored, output_format, parts, schemas, schema, texts, out)
    return fs.size(target)


def _open_part(fs, stored: Parts, mb: int):
    try:
        return stored.open(mb)
    except FileNotFoundError:
        raise _missing(stored, mb) from None


def _missing(stored: Parts, mb: int) -> MergeError:
    return MergeError(f"mini-batch {mb} was committed with results, but its part {stored.path(mb)} is missing: "
                      "the work folder was changed after scoring; rerun with --fresh")


def _write_text(fs, stored: Parts, fmt: str, parts, schemas, schema, texts: list[str], out) -> None:
    """csv/txt: parts whose columns are the output's are copied (a csv part's header
    skipped); others are re-read as text and aligned. jsonl lines carry their names."""
    delimiter = "," if fmt == "csv" else " "
    same_names = [s.names == schema.names for s in schemas] if schema is not None else None
    if fmt == "csv" and parts:
        out.write(_header(schema) if schema is not None else _first_header(fs, stored, parts[0][0], texts[0]))
    elif fmt == "csv" and texts:
        from .schemas import schema_from_text

        out.write(_header(schema_from_text(texts[0])))
    for mb, k in parts:
        if fmt == "jsonl" or k is None or same_names is None or same_names[k]:
            _copy_part(fs, stored, mb, out, skip_header=fmt == "csv")
            continue
        with _open_part(fs, stored, mb) as f:
            if fmt == "csv":
                f.readline()
            out.write(_realigned_text(f.read(), schemas[k].names, schema, delimiter))


def _first_header(fs, stored: Parts, mb: int, text: str) -> bytes:
    """The csv output's header where every part has its columns: the first part's header
    line, as _header would write it unless it is quoted (that part's values needed quotes)."""
    with _local_part(fs, stored, mb) as local:
        if local is not None:
            f, offset, length = local
            f.seek(offset)
            line = f.readline(length)
        else:
            with _open_part(fs, stored, mb) as f:
                line = f.readline()
    if line.endswith(b"\n") and b'"' not in line:
        return line
    from .schemas import schema_from_text

    return _header(schema_from_text(text))


def _copy_part(fs, stored: Parts, mb: int, out, skip_header: bool) -> None:
    """A part's bytes onto `out` (without its first line: `skip_header`): by the kernel
    (os.sendfile) from its range of its group file where both are local files and the part
    is large, else through this process (a small part from its group file read once, by
    commits.Parts: 20,000 parts of a line each took 20,000 opens and reads)."""
    record = stored.records.get(mb)
    if (record is not None and record.part is not None and record.part[2] < _SENDFILE_MIN) or _fileno(out) is None:
        return _copy_through(fs, stored, mb, out, skip_header)
    with _local_part(fs, stored, mb) as local:
        if local is None:
            return _copy_through(fs, stored, mb, out, skip_header)
        f, offset, length = local
        if skip_header:
            f.seek(offset)
            skipped = len(f.readline(length))
            offset, length = offset + skipped, length - skipped
        _send(out, f, offset, length, stored, mb)


def _copy_through(fs, stored: Parts, mb: int, out, skip_header: bool) -> None:
    with _open_part(fs, stored, mb) as f:
        if skip_header:
            f.readline()
        shutil.copyfileobj(f, out, _COPY_BUFFER)


def _fileno(out) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a stored object
        return None


def _send(out, f, offset: int, length: int, stored: Parts, mb: int) -> None:
    """Bytes offset..offset+length of local file `f` onto local file `out`, by the kernel."""
    out.flush()
    while length > 0:
        sent = os.sendfile(out.fileno(), f.fileno(), offset, length)
        if not sent:
            raise _missing(stored, mb)
        offset, length = offset + sent, length - sent


@contextlib.contextmanager
def _local_part(fs, stored: Parts, mb: int):
    """(its file opened, offset, length) for a part on a local disk (a range of a group file,
    or a whole part file of a run scored before group commits); None elsewhere."""
    if fs is None or not is_local(fs):
        yield None
        return
    record = stored.records.get(mb)
    try:
        f = open(stored.path(mb), "rb")  # noqa: SIM115 - closed by the caller's with
    except FileNotFoundError:
        raise _missing(stored, mb) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        offset, length = record.part[1:] if record is not None and record.part else (0, size)
        if size < offset + length:
            raise _missing(stored, mb)
        yield f, offset, length


def _header(schema) -> bytes:
    import pyarrow as pa

    from .outputs import write_csv

    return write_csv(pa.table({name: pa.array([], pa.string()) for name in schema.names}), True, ",")


def _realigned_text(data: bytes, names: list[str], schema, delimiter: str) -> bytes:
    """A part's rows (no header) with the output's columns: values kept as written."""
    import pyarrow as pa
    import pyarrow.csv as csv

    from .outputs import write_csv

    table = csv.read_csv(io.BytesIO(data), read_options=csv.ReadOptions(column_names=names),
                         parse_options=csv.ParseOptions(delimiter=delimiter),
                         convert_options=csv.ConvertOptions(column_types={n: pa.string() for n in names}))
    return write_csv(aligned(table, schema), False, delimiter)


def _parquet_parts(fs, stored: Parts, parts, schemas, schema):
    """Each part as Parquet bytes with the output's columns, in plan order, and the function
    that encodes it anew (for a part the joiner refuses). A part whose columns are the
    output's is its bytes as the worker wrote them; others are decoded, aligned, encoded."""

    def realigned(mb: int, data: bytes) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .outputs import write_parquet

        try:
            table = pq.read_table(pa.py_buffer(data))
        except (pa.ArrowInvalid, OSError) as e:
            raise MergeError(f"mini-batch {mb}: its part {stored.path(mb)} is not readable ({e}); "
                             "rerun with --fresh") from e
        return write_parquet(aligned(table, schema) if schema is not None else table)

    same = [schema is None or s == schema for s in schemas]
    for mb, k in parts:
        with _open_part(fs, stored, mb) as f:
            data = f.read()
        yield mb, data if k is None or not same or same[k] else realigned(mb, data), \
            lambda mb=mb, data=data: realigned(mb, data)


def _write_parquet(fs, stored: Parts, parts, schemas, schema, texts: list[str], out) -> None:
    """One Parquet file: the parts' row groups copied as bytes (runner/parquetjoin.py). Where
    every part has the output's columns and all are local files, a part's body goes by the
    kernel and only its footer is read here."""
    from .parquetjoin import Joiner, NotJoinable

    joiner = Joiner(out)

    def join(mb: int, data: bytes, encoded_anew) -> None:
        try:
            joiner.add(data)
        except NotJoinable:  # e.g. a part written by another pyarrow: its columns through Arrow
            try:
                joiner.add(encoded_anew())
            except NotJoinable as e:
                raise MergeError(f"mini-batch {mb}: its part {stored.path(mb)} cannot join the output ({e}); "
                                 "rerun with --fresh") from e

    if schemas or _fileno(out) is None or not is_local(fs):
        for part in _parquet_parts(fs, stored, parts, schemas, schema):
            join(*part)
    else:
        for mb, _ in parts:
            if not _send_parquet(joiner, fs, stored, mb, out):  # refused, nothing written: as bytes
                join(*next(_parquet_parts(fs, stored, [(mb, None)], [], None)))
    if joiner.head is not None:
        joiner.close()
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .schemas import schema_from_text

    if schema is None and texts:
        schema = schema_from_text(texts[0])
    pq.write_table(pa.table({}) if schema is None else schema.empty_table(), out)


def _send_parquet(joiner, fs, stored: Parts, mb: int, out) -> bool:
    """Join a part in a local file by reading its footer and sending its body; False where
    the joiner refuses it (nothing written then)."""
    from .parquetjoin import MAGIC, NotJoinable, read_file

    with _local_part(fs, stored, mb) as (f, offset, length):
        try:
            meta, body = read_file(f, offset, offset + length)
            joiner.add_body(meta, body, lambda out: _send(out, f, offset + len(MAGIC), body, stored, mb))
        except NotJoinable:
            return False
    return True


def _write_dataset(fs, stored: Parts, parts, schemas, schema, folder: str) -> int:
    """A folder of Parquet files in plan order (part-00000.parquet, ...), then `_SUCCESS`;
    an earlier folder of that name is removed first. Returns the bytes written."""
    if fs.exists(folder):
        fs.rm(folder, recursive=True)
    fs.makedirs(folder, exist_ok=True)
    size = 0
    for i, (_, data, _) in enumerate(_parquet_parts(fs, stored, parts, schemas, schema)):
        write_atomic(fs, f"{folder}/part-{i:05d}.parquet", data)
        size += len(data)
    write_atomic(fs, f"{folder}/{DATASET_MARKER}", b"")
    return size


# -- the merge --------------------------------------------------------------------------


def merge(spec: JobSpec, plan: Plan, fs, layout: Layout, write_final: bool = True) -> RunSummary:
    """Write the run's summary.json and errors.jsonl, and (appendRow) the output file.

    Returns the summary. `write_final` is False when a threshold stopped the run:
    the counts and errors are still written, the output file is not, and an earlier
    run's file of that name is moved aside so that it cannot pass for this run's.
    Once published, the parts are deleted; merging a merged run returns its summary.
    """
    merged = read_summary(fs, layout)
    if merged is not None and merged.succeeded:
        return merged
    committed = read_commits(fs, layout, range(plan.total_mini_batches))
    results = range_results(plan, committed)
    counts = Counts()
    failed_ids = []
    for r in results:
        counts.add(r.counts)
        failed_ids.extend(r.failed_ids)
    exceeded = next((r.threshold_reason for r in pod_results(fs, layout) if r.threshold_reason), None)
    exceeded = exceeded or spec_threshold_exceeded(spec, counts, plan.total_mini_batches)

    settle(fs, layout, committed)
    with open_atomic(fs, layout.errors) as out:
        for mb_id in sorted(failed_ids):
            for record in committed[mb_id].errors:
                out.write((json.dumps(record.to_dict()) + "\n").encode())

    write_report(fs, layout, committed)

    uris = Layout.uris(spec, layout.run_id)
    output, final = None, layout.final_output(spec.output.file_name)
    if write_final and not exceeded:
        _check_complete(plan, results)
    if write_final and not exceeded and spec.output.action == "appendRow":
        try:
            size = write_output(fs, layout, spec.output.format, final, plan, results, committed, spec.output.layout)
        except MergeError:
            _move_aside(fs, final)
            raise
        output = {"uri": uris.final_output(spec.output.file_name), "bytes": size}
    status = "Failed" if exceeded or not write_final else "Succeeded"
    stale = _move_aside(fs, final) if status == "Failed" else None
    warning = all_items_failed(counts) if status == "Succeeded" else None
    summary = RunSummary(
        layout.run_id, status, exceeded, counts, plan.total_mini_batches, plan.total_items, plan.total_bytes,
        thresholds={"errorThreshold": spec.error_threshold, "miniBatchErrorThreshold": spec.mini_batch_error_threshold,
                    "allowedFailedPercent": spec.allowed_failed_percent},
        output=output, errors=uris.errors, summary=uris.summary,
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        previous_output=uris.final_output(os.path.basename(stale)) if stale else None,
        warning={"reason": ALL_ITEMS_FAILED, "message": warning} if warning else None)
    write_atomic(fs, layout.summary, json.dumps(summary.to_dict(), indent=1).encode())
    if status == "Succeeded" and not counts.items_failed and not counts.mini_batches_failed:
        _remove_parts(fs, layout)  # with failed items they stay: a repair run (repair.py) keeps the rest
    return summary


def read_summary(fs, layout: Layout) -> RunSummary | None:
    try:
        with fs.open(layout.summary, "rb") as f:
            return RunSummary.from_dict(json.load(f))
    except FileNotFoundError:
        return None


def _check_complete(plan: Plan, results: list[ShardResult]) -> None:
    for s, r in zip(plan.shards, results):
        committed = r.counts.mini_batches
        if committed != s.count:
            raise MergeError(f"mini-batches {s.first:,}-{s.first + s.count - 1:,}: {committed:,} of {s.count:,} "
                             "committed; run the scoring to the end before merging")


def _move_aside(fs, final: str) -> str | None:
    """An earlier run's final file, renamed so that it cannot pass for this run's result."""
    if not fs.exists(final):
        return None
    previous = final + PREVIOUS_SUFFIX
    fs.mv(final, previous, recursive=fs.isdir(final))  # a dataset is a folder
    return previous


def _remove_parts(fs, layout: Layout) -> None:
    """Parts and commit records are only needed until the output is published."""
    for folder in (layout.parts_dir, layout.all_commits_dir, layout.done_dir, layout.resource_pieces_dir):
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
