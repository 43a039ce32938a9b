"""Planning az:// input through adlfs: files by count, Parquet by row groups, csv by bytes and by rows."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parallelrun.runner.planning import PlanError, make_plan
from parallelrun.runner.readers import Reader
from parallelrun.runner.spec import load_spec


def spec_for(uri: str, type: str = "files", **extra):
    inp = {"uri": uri, "type": type, **extra.pop("input", {})}
    return load_spec({"spec": {"input": inp, "code": {"entryScript": "score.py"},
                               "output": {"uri": uri.rstrip("/") + "-out/"}, **extra}})


def read_back(plan, tmp_path) -> pd.DataFrame:
    """Every mini-batch of a tabular plan read as a worker reads it, concatenated in plan order."""
    reader = Reader(plan, str(tmp_path / "scratch"))
    frames = []
    for mb in plan.mini_batches:
        frame, items = reader.read(mb)
        assert items == len(frame)
        if mb.items is not None:
            assert mb.items == len(frame), mb
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_files_by_count_with_pattern_and_markers_skipped(az_job, tmp_path):
    for name in ["b.png", "a.png", "c.txt", "e.png", "_SUCCESS", ".hidden.png", "sub/d.png",
                 "_parallelrun/run/x.png", "f.png"]:
        az_job.upload(f"in/{name}", b"x" * 10)
    plan = make_plan(spec_for(az_job.uri("in/"), miniBatchSize=2, input={"pattern": "*.png"}))
    assert plan.input_uri == az_job.uri("in/")
    assert [mb.files for mb in plan.mini_batches] == [("a.png", "b.png"), ("e.png", "f.png"), ("sub/d.png",)]
    assert [mb.size for mb in plan.mini_batches] == [20, 20, 10]
    assert plan.total_items == 5 and plan.total_mini_batches == 3 and plan.total_bytes == 50
    assert plan.absolute("sub/d.png") == az_job.uri("in/sub/d.png")

    everything = make_plan(spec_for(az_job.uri("in"), miniBatchSize=10))  # no trailing slash, no pattern
    assert everything.mini_batches[0].files == ("a.png", "b.png", "c.txt", "e.png", "f.png", "sub/d.png")


def test_listing_keeps_to_its_folder_and_skips_folder_markers(az_job, azurite):
    """Blobs are listed page by page (adlfs' find would hold every blob's properties)."""
    from azure.storage.blob import ContainerClient

    for name in ["in/a.bin", "in/sub/b.bin", "in2/c.bin", "inner.bin"]:
        az_job.upload(name, b"xy")
    client = ContainerClient.from_connection_string(azurite.connection_string, az_job.container)
    client.upload_blob("in/folder", b"", metadata={"hdi_isfolder": "true"})  # a hierarchical namespace's folder
    plan = make_plan(spec_for(az_job.uri("in"), miniBatchSize=10))
    assert plan.mini_batches[0].files == ("a.bin", "sub/b.bin") and plan.total_bytes == 4
    with pytest.raises(PlanError, match="no input files under az://"):
        make_plan(spec_for(az_job.uri("nothing-here/")))
    with pytest.raises(PlanError, match="az://no-such-container/in/ does not exist"):
        make_plan(spec_for("az://no-such-container/in/"))


def test_single_blob_as_input(az_job):
    az_job.upload("in/only.txt", b"hello")
    plan = make_plan(spec_for(az_job.uri("in/only.txt"), miniBatchSize=3))
    assert plan.input_uri == az_job.uri("in/")
    assert [mb.files for mb in plan.mini_batches] == [("only.txt",)]


def _parquet(table: pa.Table, row_group_size: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    return buf.getvalue()


def _table(rows: int, offset: int = 0) -> pa.Table:
    ids = np.arange(offset, offset + rows)
    return pa.table({"id": ids, "value": ids * 0.5, "name": [f"row-{i}" for i in ids]})


def test_parquet_mini_batches_follow_row_groups(az_job, tmp_path):
    az_job.upload("in/part-0.parquet", _parquet(_table(1000), row_group_size=100))
    az_job.upload("in/part-1.parquet", _parquet(_table(350, offset=1000), row_group_size=100))
    plan = make_plan(spec_for(az_job.uri("in/"), "tabular", miniBatchSize=250, input={"format": "parquet"}))
    assert [(mb.file, mb.rows) for mb in plan.mini_batches] == [
        ("part-0.parquet", (0, 200)), ("part-0.parquet", (200, 400)), ("part-0.parquet", (400, 600)),
        ("part-0.parquet", (600, 800)), ("part-0.parquet", (800, 1000)),
        ("part-1.parquet", (0, 200)), ("part-1.parquet", (200, 350)),
    ]
    assert plan.total_items == 1350
    frame = read_back(plan, tmp_path)
    assert frame["id"].tolist() == list(range(1350))
    pd.testing.assert_frame_equal(frame, pd.concat([_table(1000).to_pandas(), _table(350, 1000).to_pandas()],
                                                   ignore_index=True))


def test_parquet_large_row_group_is_sliced_evenly(az_job, tmp_path):
    az_job.upload("in/big.parquet", _parquet(_table(1000), row_group_size=1000))
    plan = make_plan(spec_for(az_job.uri("in/"), "tabular", miniBatchSize=300, input={"format": "parquet"}))
    assert [mb.rows for mb in plan.mini_batches] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert read_back(plan, tmp_path)["id"].tolist() == list(range(1000))


def test_parquet_by_bytes(az_job, tmp_path):
    data = _parquet(_table(2000), row_group_size=100)
    az_job.upload("in/data.parquet", data)
    plan = make_plan(spec_for(az_job.uri("in/"), "tabular", miniBatchSize=f"{len(data) // 4}B",
                              input={"format": "parquet"}))
    assert 4 <= plan.total_mini_batches <= 6
    assert all(a % 100 == 0 and b % 100 == 0 for a, b in (mb.rows for mb in plan.mini_batches))
    assert read_back(plan, tmp_path)["id"].tolist() == list(range(2000))


def _csv(rows: int, offset: int = 0, trailing_newline: bool = True) -> bytes:
    # Lines of varied length, so byte cuts land mid-line and must move to the next line end.
    lines = ["id,label,text"] + [f"{i},{i % 7},{'x' * (i % 23)}" for i in range(offset, offset + rows)]
    return ("\n".join(lines) + ("\n" if trailing_newline else "")).encode()


@pytest.fixture
def csv_input(az_job):
    files = {"a.csv": _csv(1000), "b.csv": _csv(333, offset=1000, trailing_newline=False)}
    for name, data in files.items():
        az_job.upload(f"in/{name}", data)
    return files


def _check_ranges(plan, files: dict[str, bytes]) -> None:
    """Byte ranges of each file: contiguous from the end of the header to the end, on line boundaries."""
    for name, data in files.items():
        ranges = [mb.bytes for mb in plan.mini_batches if mb.file == name]
        assert ranges[0][0] == data.index(b"\n") + 1
        assert ranges[-1][1] == len(data)
        for (_, stop), (start, _) in itertools.pairwise(ranges):
            assert stop == start and data[stop - 1:stop] == b"\n"


def test_csv_by_size_reads_back_every_row_once(az_job, csv_input, tmp_path):
    plan = make_plan(spec_for(az_job.uri("in/"), "tabular", miniBatchSize="2KB", input={"format": "csv"}))
    assert plan.total_mini_batches > 4
    assert all(mb.items is None for mb in plan.mini_batches)
    assert {mb.file for mb in plan.mini_batches} == {"a.csv", "b.csv"}
    _check_ranges(plan, csv_input)
    frame = read_back(plan, tmp_path)
    assert list(frame.columns) == ["id", "label", "text"]
    assert frame["id"].tolist() == list(range(1333))
    assert frame["label"].tolist() == [i % 7 for i in range(1333)]


def test_csv_by_rows_reads_back_every_row_once(az_job, csv_input, tmp_path):
    plan = make_plan(spec_for(az_job.uri("in/"), "tabular", miniBatchSize=97, input={"format": "csv"}))
    items = [(mb.file, mb.items) for mb in plan.mini_batches]
    assert items == [("a.csv", 97)] * 10 + [("a.csv", 30)] + [("b.csv", 97)] * 3 + [("b.csv", 42)]
    assert plan.total_items == 1333
    _check_ranges(plan, csv_input)
    frame = read_back(plan, tmp_path)
    assert frame["id"].tolist() == list(range(1333))


def test_manifest_of_blobs_plans_exactly_them_in_its_order(az_job, tmp_path):
    """A manifest blob naming blobs (relative to its folder, or as az:// URLs); each stamped with its ETag."""
    for name in ["a.png", "b.png", "sub/c.png", "unlisted.png"]:
        az_job.upload(f"in/{name}", b"x" * 7)
    az_job.upload("lists/new.txt", f"../in/sub/c.png\n\n{az_job.uri('in/a.png')}\n../in/b.png\n")
    spec = load_spec({"spec": {"input": {"manifest": az_job.uri("lists/new.txt"), "type": "files"},
                               "code": {"entryScript": "score.py"}, "output": {"uri": az_job.uri("out/")},
                               "miniBatchSize": 2}})
    plan = make_plan(spec)
    assert plan.input_uri == az_job.uri("in/")
    assert [mb.files for mb in plan.mini_batches] == [("sub/c.png", "a.png"), ("b.png",)]
    etag = az_job.fs.info(az_job.blob("in/b.png"))["etag"].strip('"')
    assert plan.mini_batches[1].file_stamps() == [(7, etag)]
    paths = Reader(plan, str(tmp_path / "scratch")).read(plan.mini_batches[0])[0]
    assert [p.rsplit("/", 2)[-2:] for p in paths] == [["sub", "c.png"], ["0", "a.png"]]

    az_job.upload("lists/new.txt", "../in/a.png\n../in/gone.png\n")
    with pytest.raises(PlanError, match=r"spec.input.manifest: az://.*/in/gone.png does not exist"):
        make_plan(spec)
