"""The merge on az://: the final output appears whole or not at all."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parallelrun.runner.layout import Layout
from parallelrun.runner.merge import MergeError, merge
from parallelrun.runner.outputs import encode_part
from parallelrun.runner.plan import ensure_plan
from parallelrun.runner.schemas import schema_to_text
from parallelrun.runner.spec import load_spec


def _committed_run(az_job, corrupt: int | None = None):
    """A planned run of three mini-batches whose parts are all committed (one unreadable if `corrupt`)."""
    az_job.upload("in/a.csv", "id\n" + "".join(f"{i}\n" for i in range(30)))
    spec = load_spec({"spec": {"input": {"uri": az_job.uri("in/"), "type": "tabular", "format": "csv"},
                               "code": {"entryScript": "score.py"}, "miniBatchSize": 10,
                               "output": {"uri": az_job.uri("out/"), "format": "parquet", "fileName": "out.parquet"}}})
    layout = Layout(az_job.blob("out"), "merge-1", "parquet")
    plan = ensure_plan(spec, az_job.fs, layout)
    schema = None
    for mb in range(3):
        encoded = encode_part([{"id": i} for i in range(mb * 10, mb * 10 + 10)], "parquet")
        schema = schema_to_text(encoded.schema)
        part = b"not an arrow stream" if mb == corrupt else encoded.data
        az_job.fs.pipe_file(layout.part(mb), part)
        az_job.fs.pipe_file(layout.done(mb), json.dumps({"id": mb, "status": "succeeded", "items": 10,
                                                         "succeeded": 10, "failed": 0, "attempts": 1,
                                                         "errors": []}).encode())
    az_job.fs.pipe_file(layout.shard_result(0), json.dumps(
        {"shard": 0, "miniBatches": {"succeeded": 3, "failed": 0}, "items": {"succeeded": 30, "failed": 0},
         "thresholdExceeded": None, "failedMiniBatches": [], "withoutPart": [], "schemas": [schema],
         "schemaOf": {}}).encode())
    return spec, plan, layout


def test_merge_writes_parquet_in_plan_order(az_job):
    spec, plan, layout = _committed_run(az_job)
    summary = merge(spec, plan, az_job.fs, layout)
    assert summary.succeeded
    with az_job.fs.open(az_job.blob("out/out.parquet"), "rb") as f:
        assert pq.read_table(f) == pa.table({"id": list(range(30))})


def test_failed_merge_publishes_no_partial_output(az_job):
    """A merge that fails half-way (here: an unreadable part) leaves no final output behind.

    On a local disk the output is written to a temporary name and renamed; on a blob store
    a file closed on the way out of an exception is committed all the same.
    """
    spec, plan, layout = _committed_run(az_job, corrupt=1)
    with pytest.raises(MergeError, match="mini-batch 1: its part .* is not readable"):
        merge(spec, plan, az_job.fs, layout)
    assert not az_job.exists("out/out.parquet"), "a partial final output was published"
