"""The merge: one output file in plan order, plus summary.json and errors.jsonl.

Runs once every shard has finished (a merge Job on Kubernetes, the last step of local
mode). Parts are concatenated as bytes (txt, csv minus repeated headers, jsonl) or
streamed into one Parquet file; nothing is held in memory but one part at a time.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import uuid
from contextlib import contextmanager

from .accounting import Counts, spec_threshold_exceeded
from .layout import Layout
from .plan import Plan
from .shard import ShardResult
from .spec import JobSpec
from .storage import is_local, write_atomic

_COPY_BUFFER = 8 * 2**20


class MergeError(RuntimeError):
    """The run cannot be merged (a shard has not finished)."""


def shard_results(fs, layout: Layout, plan: Plan) -> list[dict]:
    """Each shard's result; a shard with nothing to do may not have run at all (the operator
    starts no pod for it)."""
    results = []
    for s in plan.shards:
        try:
            with fs.open(layout.shard_result(s["index"]), "rb") as f:
                results.append(json.load(f))
        except FileNotFoundError:
            if s["count"]:
                raise MergeError(f"shard {s['index']} has not finished; run it before merging") from None
            results.append(ShardResult(s["index"], Counts(), None, []).to_dict())
    return results


@contextmanager
def _publish(fs, path: str):
    """A file opened for writing that appears at `path` only when complete: it is
    written under a temporary name beside it and moved into place, so a merge that
    fails halfway publishes nothing (closing a blob upload would commit it)."""
    tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}"
    local = is_local(fs)
    if local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with (open(tmp, "wb") if local else fs.open(tmp, "wb")) as f:
            yield f
        if local:
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def _part_paths(fs, layout: Layout) -> list[str]:
    try:
        return sorted(p for p in fs.ls(layout.parts_dir, detail=False)
                      if p.endswith("." + layout.part_ext) and not os.path.basename(p).startswith("."))
    except FileNotFoundError:
        return []


def write_output(fs, layout: Layout, output_format: str, target: str) -> int:
    """Concatenate the committed parts into `target`; returns its size in bytes."""
    parts = _part_paths(fs, layout)
    with _publish(fs, target) as out:
        if output_format == "parquet":
            _write_parquet(fs, parts, out)
        else:
            for i, part in enumerate(parts):
                with fs.open(part, "rb") as f:
                    if output_format == "csv" and i > 0:
                        f.readline()  # every csv part carries the header; keep the first
                    shutil.copyfileobj(f, out, _COPY_BUFFER)
    return fs.size(target)


def _write_parquet(fs, parts: list[str], out) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for part in parts:
            with fs.open(part, "rb") as f:
                table = pa.ipc.open_stream(f).read_all()
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
        if writer is None:
            pq.write_table(pa.table({}), out)
    finally:
        if writer is not None:
            writer.close()


def merge(spec: JobSpec, plan: Plan, fs, layout: Layout, write_final: bool = True) -> dict:
    """Write the run's summary.json and errors.jsonl, and (appendRow) the output file.

    Returns the summary. `write_final` is False when a threshold stopped the run:
    the counts and errors are still written, the output file is not.
    """
    results = shard_results(fs, layout, plan)
    counts = Counts()
    failed_ids = []
    for r in results:
        counts.add(Counts.from_dict(r))
        failed_ids.extend(r["failedMiniBatches"])
    exceeded = next((r["thresholdExceeded"] for r in results if r.get("thresholdExceeded")), None)
    exceeded = exceeded or spec_threshold_exceeded(spec, counts, plan.total_mini_batches)

    with _publish(fs, layout.errors) as out:
        for mb_id in sorted(failed_ids):
            with fs.open(layout.done(mb_id), "rb") as f:
                for record in json.load(f)["errors"]:
                    out.write((json.dumps(record) + "\n").encode())

    output = None
    if write_final and not exceeded and spec.output.action == "appendRow":
        target = layout.final_output(spec.output.file_name)
        size = write_output(fs, layout, spec.output.format, target)
        output = {"uri": spec.output.uri.rstrip("/") + "/" + spec.output.file_name, "bytes": size}
    summary = {
        "runId": layout.run_id,
        "status": "Failed" if exceeded else "Succeeded",
        "reason": exceeded,
        **counts.to_dict(),
        "plan": {"miniBatches": plan.total_mini_batches, "items": plan.total_items, "bytes": plan.total_bytes},
        "thresholds": {"errorThreshold": spec.error_threshold,
                       "miniBatchErrorThreshold": spec.mini_batch_error_threshold,
                       "allowedFailedPercent": spec.allowed_failed_percent},
        "output": output,
        "errors": spec.output.uri.rstrip("/") + f"/_parallelrun/{layout.run_id}/errors.jsonl",
        "finishedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    summary["miniBatches"]["total"] = plan.total_mini_batches
    write_atomic(fs, layout.summary, json.dumps(summary, indent=1).encode())
    return summary
