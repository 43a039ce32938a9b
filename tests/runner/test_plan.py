"""Planning: deterministic mini-batches from any fsspec URL, balanced shards, plan round trip."""

import dataclasses
import subprocess
import sys

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parallelrun.runner.layout import Layout
from parallelrun.runner.parquetjoin import read_footer
from parallelrun.runner.planning import (
    FileBatches,
    Listing,
    MiniBatch,
    PlanError,
    make_plan,
    read_plan,
    read_shard,
    shard,
    shards_with_work,
    write_plan,
)
from parallelrun.runner.readers import Reader
from parallelrun.runner.spec import load_spec
from parallelrun.runner.storage import filesystem


def spec_for(uri, type="files", **extra):
    inp = {"uri": uri, "type": type}
    inp.update(extra.pop("input", {}))
    return load_spec({"spec": {"input": inp, "code": {"entryScript": "s.py"}, "output": {"uri": "/tmp/o/"}, **extra}})


def read_all(plan, tmp_path):
    reader = Reader(plan, str(tmp_path / "scratch"))
    frames = [reader.read(mb)[0] for mb in plan.mini_batches]
    return pd.concat(frames, ignore_index=True)


def test_files_by_count_sorted_with_pattern_and_markers_skipped(tmp_path):
    for name in ["b.png", "a.png", "c.txt", "_SUCCESS", ".hidden.png", "sub/d.png", "_parallelrun/x/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 10)
    plan = make_plan(spec_for(str(tmp_path), miniBatchSize=2, input={"pattern": "*.png"}))
    assert [mb.files for mb in plan.mini_batches] == [("a.png", "b.png"), ("sub/d.png",)]
    assert plan.total_items == 3 and plan.total_mini_batches == 2
    assert plan.absolute("a.png") == f"{tmp_path}/a.png"


def test_local_listing_is_what_fsspec_lists(tmp_path):
    """Local folders are walked with os.scandir (faster, lighter): the files fsspec would list,
    and those of a linked folder (fsspec lists the link as a file), without looping on a link up."""
    for name in ["z.bin", "a/b/c.bin", "a/_tmp/x.bin", "a/.git/y.bin", "sub dir/ü.bin", "big.bin"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * len(name))
    (tmp_path / "dangling.bin").symlink_to(tmp_path / "missing")
    (tmp_path / "linked").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path)
    local = make_plan(spec_for(str(tmp_path)))
    memory = fsspec.filesystem("memory")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            memory.pipe(f"/listing{str(path)[len(str(tmp_path)):]}", path.read_bytes())
    generic = [(mb.files, mb.size) for mb in make_plan(spec_for("memory://listing/")).mini_batches]
    assert [(mb.files, mb.size) for mb in local.mini_batches] == sorted(
        [*generic, (("dangling.bin",), 0), (("linked/b/c.bin",), 9)])


def test_the_walk_yields_paths_in_sorted_order_and_the_plan_lines_are_the_mini_batches_json(tmp_path):
    """Folders are entered where `name/` sorts among their siblings: no sort of every path at the end."""
    names = ["a", "a-b", "a.txt", "a/x", "a/y/z", "a0", "ab/c", "b", "é", "A/q", 'quote"d']
    for name in names:
        path = tmp_path / (name + ".f" if name in ("a", "ab") else name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    plan = make_plan(spec_for(str(tmp_path), nodeCount=3))
    rels = [mb.files[0] for mb in plan.mini_batches]
    assert rels == sorted(rels) and len(rels) == len(names)
    assert plan.mini_batches.json_lines(0, len(rels)) == [mb.to_json() for mb in plan.mini_batches]
    by_three = make_plan(spec_for(str(tmp_path), miniBatchSize=3))
    assert [mb.files for mb in by_three.mini_batches] == [tuple(rels[i:i + 3]) for i in range(0, len(rels), 3)]
    assert [s.items for s in by_three.shards] == [len(rels)] and by_three.mini_batches[-1].items == len(rels) % 3


def test_no_input_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match=r"spec.input.uri: no input files matching '\*.png'"):
        make_plan(spec_for(str(tmp_path), input={"pattern": "*.png"}))


def test_memory_filesystem_and_file_url():
    fs = fsspec.filesystem("memory")
    for i in range(7):
        fs.pipe(f"/plan-mem/f{i}.bin", b"abc")
    plan = make_plan(spec_for("memory://plan-mem/", miniBatchSize=3))
    assert [len(mb.files) for mb in plan.mini_batches] == [3, 3, 1]
    assert plan.absolute(plan.mini_batches[0].files[0]) == "memory://plan-mem/f0.bin"


def test_single_file_uri(tmp_path):
    (tmp_path / "one.csv").write_text("a\n1\n2\n")
    plan = make_plan(spec_for(f"file://{tmp_path}/one.csv", "tabular", input={"format": "csv"}))
    assert read_all(plan, tmp_path)["a"].tolist() == [1, 2]


def write_parquet(path, rows, row_group):
    pq.write_table(pa.table({"x": np.arange(rows), "y": np.arange(rows) * 0.5}), path, row_group_size=row_group)


def test_parquet_whole_row_groups_up_to_the_target(tmp_path):
    write_parquet(tmp_path / "a.parquet", 1000, 100)
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "parquet"}, miniBatchSize=250))
    assert [mb.rows for mb in plan.mini_batches] == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]
    assert read_all(plan, tmp_path)["x"].tolist() == list(range(1000))


def test_parquet_large_row_group_is_split_and_read_exactly(tmp_path):
    write_parquet(tmp_path / "a.parquet", 1000, 1000)
    write_parquet(tmp_path / "b.parquet", 10, 10)
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "parquet"}, miniBatchSize=300))
    assert [mb.rows for mb in plan.mini_batches] == [(0, 250), (250, 500), (500, 750), (750, 1000), (0, 10)]
    got = read_all(plan, tmp_path)["x"].tolist()
    assert got == list(range(1000)) + list(range(10))


def test_parquet_is_planned_from_the_footers_without_loading_pyarrow_or_numpy(tmp_path):
    write_parquet(tmp_path / "a.parquet", 1000, 100)
    code = f"""
import sys
from parallelrun.runner.planning import make_plan
from parallelrun.runner.spec import load_spec
spec = load_spec({{"spec": {{"input": {{"uri": {str(tmp_path)!r}, "type": "tabular", "format": "parquet"}},
                 "code": {{"entryScript": "s.py"}}, "output": {{"uri": "/tmp/o/"}}, "miniBatchSize": 250}}}})
print([mb.rows for mb in make_plan(spec).mini_batches], [m for m in sys.modules if m in ("pyarrow", "numpy", "pandas")])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)] []"


def test_past_its_budget_of_footer_bytes_pyarrow_reads_them_with_the_same_plan(tmp_path, monkeypatch):
    from parallelrun.runner.planning import making

    for name, rows, group in (("a", 1000, 100), ("b", 1000, 1000), ("c", 10, 3)):
        write_parquet(tmp_path / f"{name}.parquet", rows, group)
    spec = spec_for(str(tmp_path), "tabular", input={"format": "parquet"}, miniBatchSize=300)
    in_python = make_plan(spec).mini_batches
    made = []

    class OneFooterInPython(making.RowGroupRows):
        def __init__(self):
            super().__init__(python_bytes=1)
            made.append(self)

    monkeypatch.setattr(making, "RowGroupRows", OneFooterInPython)
    assert make_plan(spec).mini_batches == in_python
    with open(tmp_path / "a.parquet", "rb") as f:  # the first file's footer; b's and c's went to pyarrow
        assert made[0].parsed == read_footer(f)[1]


def test_a_parquet_file_that_is_none_fails_planning_naming_it(tmp_path):
    write_parquet(tmp_path / "a.parquet", 10, 10)
    (tmp_path / "b.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PlanError, match=r"cannot read .*b\.parquet as parquet"):
        make_plan(spec_for(str(tmp_path), "tabular", input={"format": "parquet"}))


def write_csv(path, rows):
    pd.DataFrame({"id": range(rows), "text": [f"row {i}" for i in range(rows)]}).to_csv(path, index=False)


@pytest.mark.parametrize("size", ["1KB", "100B", "1MB"])
def test_csv_byte_ranges_end_on_lines_and_lose_nothing(tmp_path, size):
    write_csv(tmp_path / "a.csv", 1000)
    write_csv(tmp_path / "b.csv", 3)
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "csv"}, miniBatchSize=size))
    assert plan.total_items is None  # known only when read
    df = read_all(plan, tmp_path)
    assert df["id"].tolist() == list(range(1000)) + list(range(3))
    assert list(df.columns) == ["id", "text"]


def test_csv_by_rows_knows_its_items_and_handles_a_last_line_without_newline(tmp_path):
    (tmp_path / "a.csv").write_text("id;v\n" + "\n".join(f"{i};{i * 2}" for i in range(10)))
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "csv", "options": {"delimiter": ";"}},
                              miniBatchSize=4))
    assert [mb.items for mb in plan.mini_batches] == [4, 4, 2]
    assert read_all(plan, tmp_path)["v"].tolist() == [i * 2 for i in range(10)]


def test_csv_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("1,2\n3,4\n")
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "csv", "options": {"header": False}}))
    df = read_all(plan, tmp_path)
    assert list(df.columns) == ["f0", "f1"] and df["f1"].tolist() == [2, 4]


def test_jsonl_ranges(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(f'{{"k": {i}}}\n' for i in range(500)))
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "jsonl"}, miniBatchSize="1KB"))
    assert len(plan.mini_batches) > 3
    assert read_all(plan, tmp_path)["k"].tolist() == list(range(500))


def test_partition_keys_from_columns_and_hive_folders(tmp_path):
    df = pd.DataFrame({"species": ["b", "a", "b", "c", "a"], "v": [1, 2, 3, 4, 5]})
    df.iloc[:3].to_parquet(tmp_path / "p1.parquet")
    df.iloc[3:].to_parquet(tmp_path / "p2.parquet")
    plan = make_plan(spec_for(str(tmp_path), "tabular", input={"format": "parquet"}, partitionKeys=["species"]))
    assert [(mb.key, mb.items, mb.files) for mb in plan.mini_batches] == [
        ({"species": "a"}, 2, ("p1.parquet", "p2.parquet")), ({"species": "b"}, 2, ("p1.parquet",)),
        ({"species": "c"}, 1, ("p2.parquet",))]
    reader = Reader(plan, str(tmp_path))
    assert sorted(reader.read(plan.mini_batches[0])[0]["v"].tolist()) == [2, 5]

    hive = tmp_path / "hive"
    for region, values in {"east": [1, 2], "west": [3]}.items():
        (hive / f"region={region}").mkdir(parents=True)
        pd.DataFrame({"v": values}).to_parquet(hive / f"region={region}" / "part.parquet")
    plan = make_plan(spec_for(str(hive), "tabular", input={"format": "parquet"}, partitionKeys=["region"]))
    assert [(mb.key, mb.items) for mb in plan.mini_batches] == [({"region": "east"}, 2), ({"region": "west"}, 1)]
    assert Reader(plan, str(tmp_path)).read(plan.mini_batches[1])[0]["v"].tolist() == [3]


def test_unknown_partition_key(tmp_path):
    pd.DataFrame({"v": [1]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(PlanError, match="spec.partitionKeys: nope not a column"):
        make_plan(spec_for(str(tmp_path), "tabular", input={"format": "parquet"}, partitionKeys=["nope"]))


def test_shards_are_contiguous_balanced_and_cover_everything():
    sizes = [5, 1, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1]
    batches = [MiniBatch(id=i, size=s, items=1, files=(str(i),)) for i, s in enumerate(sizes)]
    shards = shard(batches, 3)
    assert sum(s.count for s in shards) == 12
    assert all(shards[k].first + shards[k].count == shards[k + 1].first for k in range(2))
    assert max(s.bytes for s in shards) <= sum(sizes) / 3 + 5
    few = shard(batches[:2], 4)  # more shards asked than work: one shard per mini-batch
    assert [s.count for s in few] == [1, 1] and shards_with_work(2, 4) == 2
    assert [s.count for s in shard([], 4)] == [0] and shards_with_work(0, 4) == 1
    skewed = shard([MiniBatch(id=i, size=s, items=1, files=(str(i),)) for i, s in enumerate([100, 1, 1, 1])], 4)
    assert [s.count for s in skewed] == [1, 1, 1, 1]  # no shard left idle while there is work


@pytest.mark.parametrize("count", [1, 3, 7, 40])
def test_files_and_tabular_plans_are_sharded_alike(count):
    """A files plan is sharded from its numpy columns, a tabular one in Python: the same cuts."""
    sizes = [0, 7, 1, 1, 300, 2, 0, 0, 5, 64, 1, 1, 9, 30, 2, 2, 2, 8, 0, 1]
    listing = Listing([f"f{i}" for i in range(len(sizes))], sizes, [None] * len(sizes))
    files = FileBatches(listing, 2)
    assert shard(files, count) == shard(list(files), count)
    unknown = [dataclasses.replace(mb, items=None) if mb.id % 3 else mb for mb in files]  # csv cut by size
    assert [s.items for s in shard(unknown, 2)] == [None, None]


def test_plan_is_deterministic_and_round_trips(tmp_path):
    for i in range(20):
        (tmp_path / f"f{i:02d}").write_bytes(b"x" * (i + 1))
    spec = spec_for(str(tmp_path), miniBatchSize=3, nodeCount=3)
    first, second = make_plan(spec), make_plan(spec)
    assert first.mini_batches == second.mini_batches and first.shards == second.shards
    fs, out = filesystem(str(tmp_path / "out"))
    layout = Layout(out, "run-1")
    write_plan(first, fs, layout)
    header = read_plan(fs, layout)
    assert header.header() == first.header()
    shards = [read_shard(fs, layout, s.index) for s in header.shards]
    assert [mb for s in shards for mb in s] == first.mini_batches


def test_explicit_credentials_refuse_to_mix_with_the_process_environment(monkeypatch):
    from parallelrun.runner.storage import CredentialConflict, storage_options

    secret = {"AZURE_STORAGE_ACCOUNT_NAME": "a", "AZURE_STORAGE_ACCOUNT_KEY": "k"}
    assert storage_options("az://c/x", secret) == {"account_name": "a", "account_key": "k"}
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "operator's own")
    with pytest.raises(CredentialConflict, match="AZURE_STORAGE_CONNECTION_STRING set"):
        filesystem("az://c/x", secret)
    filesystem("memory://x", secret)  # other protocols take no Azure options
