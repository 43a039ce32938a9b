"""input.manifest: a text file listing the input files; the plan is exactly those, in its order."""

from __future__ import annotations

import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from parallelrun.runner.layout import Layout
from parallelrun.runner.local import run_local
from parallelrun.runner.planning import InputChanged, PlanError, ensure_plan, make_plan, manifest_entries
from parallelrun.runner.readers import Reader
from parallelrun.runner.spec import SpecError, load_spec
from parallelrun.runner.storage import filesystem


def spec_for(manifest, type="files", **extra):
    inp = {"manifest": str(manifest), "type": type, **extra.pop("input", {})}
    return load_spec({"spec": {"input": inp, "code": {"entryScript": "s.py"}, "output": {"uri": "/tmp/o/"}, **extra}})


def files(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name}\n")


def test_entries_in_order_relative_to_the_manifest_blank_lines_skipped():
    text = "b.png\n\n  sub/a.png  \n../up.png\n/abs/c.png\naz://box/d.png\r\n"
    assert manifest_entries(text, "az://box/lists/m.txt") == [
        "az://box/lists/b.png", "az://box/lists/sub/a.png", "az://box/up.png", "/abs/c.png", "az://box/d.png"]
    assert manifest_entries("x.csv\n", "/data/m.txt") == ["/data/x.csv"]
    assert manifest_entries("x.csv\n", "file:///data/m.txt") == ["file:///data/x.csv"]
    assert manifest_entries("x.csv", "m.txt") == [os.path.join(os.getcwd(), "x.csv")]


def test_plan_is_exactly_the_listed_files_in_manifest_order(tmp_path):
    files(tmp_path / "in", "c.png", "a.png", "_b.png", "sub/d.png", "other.png")
    manifest = tmp_path / "in" / "list.txt"
    manifest.write_bytes(("\ufeffc.png\r\n_b.png\nsub/d.png\n" + f"file://{tmp_path}/in/a.png\n").encode())
    plan = make_plan(spec_for(manifest, miniBatchSize=2))
    assert plan.input_uri == f"{tmp_path}/in/"
    assert [mb.files for mb in plan.mini_batches] == [("c.png", "_b.png"), ("sub/d.png", "a.png")]
    stat = os.stat(tmp_path / "in" / "c.png")
    assert plan.mini_batches[0].file_stamps()[0] == (stat.st_size, stat.st_mtime_ns)
    assert plan.total_items == 4
    reader = Reader(plan, str(tmp_path / "scratch"))
    assert reader.read(plan.mini_batches[1])[0] == [str(tmp_path / "in/sub/d.png"), str(tmp_path / "in/a.png")]


def test_files_of_several_folders_share_their_deepest_common_root(tmp_path):
    files(tmp_path, "x/2024/a.csv", "x/2025/b.csv")
    manifest = tmp_path / "lists" / "m.txt"
    manifest.parent.mkdir()
    manifest.write_text("../x/2025/b.csv\n../x/2024/a.csv\n")
    plan = make_plan(spec_for(manifest, "tabular", input={"format": "csv", "options": {"header": False}}))
    assert plan.input_uri == f"{tmp_path}/x/"
    assert [mb.file for mb in plan.mini_batches] == ["2025/b.csv", "2024/a.csv"]
    reader = Reader(plan, str(tmp_path / "scratch"))
    assert [reader.read(mb)[0].iloc[0, 0] for mb in plan.mini_batches] == ["x/2025/b.csv", "x/2024/a.csv"]


def test_tabular_parquet_files_are_cut_as_from_a_folder(tmp_path):
    for name, n in (("one.parquet", 5), ("two.parquet", 3)):
        pq.write_table(pa.table({"v": list(range(n))}), tmp_path / name, row_group_size=2)
    (tmp_path / "m.txt").write_text("two.parquet\none.parquet\n")
    plan = make_plan(spec_for(tmp_path / "m.txt", "tabular", input={"format": "parquet"}, miniBatchSize=2))
    assert [(mb.file, mb.rows) for mb in plan.mini_batches] == [
        ("two.parquet", (0, 2)), ("two.parquet", (2, 3)), ("one.parquet", (0, 2)), ("one.parquet", (2, 4)),
        ("one.parquet", (4, 5))]
    assert plan.total_items == 8


@pytest.mark.parametrize(("text", "match"), [
    ("", "lists no files"),
    ("\n  \n", "lists no files"),
    ("a.png\nmissing.png\n", r"missing.png does not exist; fix the manifest"),
    ("a.png\n./a.png\n", r"a.png is listed twice \(lines 1 and 2\)"),
    ("a.png\nsub\n", "sub is a folder, not a file"),
    ("a.png\nmemory://x/b.png\n", "lists files of 2 stores"),
])
def test_bad_manifests_are_plan_errors(tmp_path, text, match):
    files(tmp_path, "a.png", "sub/b.png")
    (tmp_path / "m.txt").write_text(text)
    with pytest.raises(PlanError, match=match):
        make_plan(spec_for(tmp_path / "m.txt"))


def test_a_missing_manifest_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError, match=r"spec.input.manifest: .*nothing.txt does not exist"):
        make_plan(spec_for(tmp_path / "nothing.txt"))


def test_files_of_two_containers_are_refused(tmp_path):
    (tmp_path / "m.txt").write_text("az://box1/a.png\naz://box2/b.png\n")
    with pytest.raises(PlanError, match="share no folder"):
        make_plan(spec_for(tmp_path / "m.txt"))


def test_a_manifest_on_a_store_lists_files_of_that_store():
    fs = filesystem("memory://")[0]
    fs.pipe({"/mf/data/a.png": b"a", "/mf/data/b/c.png": b"bc", "/mf/lists/m.txt": b"../data/b/c.png\n../data/a.png\n"})
    plan = make_plan(spec_for("memory://mf/lists/m.txt"))
    assert plan.input_uri == "memory://mf/data/"
    assert [mb.files for mb in plan.mini_batches] == [("b/c.png",), ("a.png",)]
    assert [mb.size for mb in plan.mini_batches] == [2, 1]


@pytest.mark.parametrize(("input", "blamed"), [
    ({"type": "files"}, "spec.input.uri: required; give input.uri (a folder or file) or input.manifest"),
    ({"type": "files", "uri": "/d/", "manifest": "/m.txt"}, "spec.input.manifest: give either input.uri or input.manifest"),
    ({"type": "files", "manifest": "/m.txt", "pattern": "*.png"}, "spec.input.pattern: applies to input.uri only"),
])
def test_spec_needs_exactly_one_of_uri_and_manifest(input, blamed):
    with pytest.raises(SpecError) as raised:
        load_spec({"spec": {"input": input, "code": {"entryScript": "s.py"}, "output": {"uri": "/o/"}}})
    assert any(e.startswith(blamed) for e in raised.value.errors), raised.value.errors


def test_manifest_path_is_relative_to_the_spec_file_and_round_trips(tmp_path):
    spec = load_spec({"spec": {"input": {"manifest": "lists/m.txt", "type": "files"}, "code": {"entryScript": "s.py"},
                               "output": {"uri": "out/"}}}, base_dir=str(tmp_path))
    assert spec.input.manifest == str(tmp_path / "lists" / "m.txt") and spec.input.uri is None
    assert spec.input.source == spec.input.manifest
    assert load_spec(spec.to_dict()) == spec


def test_resuming_with_a_changed_manifest_is_input_changed(tmp_path):
    files(tmp_path / "in", "a.png", "b.png", "c.png")
    manifest = tmp_path / "m.txt"
    manifest.write_text("in/a.png\nin/b.png\n")
    spec = spec_for(manifest)
    fs, out = filesystem(str(tmp_path / "out"))
    layout = Layout(out, "run1", "txt")
    ensure_plan(spec, fs, layout)
    manifest.write_text("in/b.png\nin/a.png\n\n")  # same files, other order and a blank line: resumes
    assert ensure_plan(spec, fs, layout).total_mini_batches == 2
    manifest.write_text("in/a.png\nin/c.png\n")
    with pytest.raises(InputChanged, match=r"1 added: c.png; 1 removed: b.png"):
        ensure_plan(spec, fs, layout)
    files(tmp_path / "other", "x.png")
    manifest.write_text("in/a.png\nother/x.png\n")  # another root: whole URIs are compared
    with pytest.raises(InputChanged, match=r"1 added: \S*/other/x.png; 1 removed: \S*/in/b.png"):
        ensure_plan(spec, fs, layout)


SCRIPT = """
import os
def run(mini_batch):
    return [os.path.basename(p) + ":" + open(p).read().strip() for p in mini_batch]
"""


def test_local_mode_scores_the_manifest_in_its_order_and_names_a_listed_file_that_is_gone(job):
    job.files(4)
    job.script(SCRIPT)
    (job.root / "todo.txt").write_text("data/item_0003.txt\ndata/item_0001.txt\n")
    path = job.write(input={"uri": None, "manifest": "todo.txt"}, miniBatchSize=1)
    summary = run_local(str(path), console=Console(file=io.StringIO()))
    assert summary["items"]["succeeded"] == 2
    assert job.final().read_text() == "item_0003.txt:3\nitem_0001.txt:1\n"

    (job.root / "todo.txt").write_text("data/item_0004.txt\n")
    with pytest.raises(PlanError, match="spec.input.manifest: .*item_0004.txt does not exist"):
        run_local(str(path), console=Console(file=io.StringIO()))


def test_validate_checks_that_the_manifest_is_there(tmp_path):
    from parallelrun.runner.preflight import missing_files

    spec = spec_for(tmp_path / "absent.txt")
    assert missing_files(spec) == [f"spec.input.manifest: {tmp_path}/absent.txt does not exist; "
                                   "fix the path of the input manifest"]
    (tmp_path / "absent.txt").write_text("x.png\n")
    assert missing_files(spec) == []
