"""The local walk's stamps and the plan lines of a files input, against plain references."""

import dataclasses
import os

import pytest

from parallelrun.runner.claims import chunks
from parallelrun.runner.layout import Layout
from parallelrun.runner.planning import FileBatches, Listing, MiniBatch, make_plan, read_plan, write_plan
from parallelrun.runner.planning.listing import _local_listing
from parallelrun.runner.shard import ShardRunner
from parallelrun.runner.spec import load_spec
from parallelrun.runner.storage import filesystem


def spec_for(uri, **extra):
    return load_spec({"spec": {"input": {"uri": uri, "type": "files"}, "code": {"entryScript": "s.py"},
                               "output": {"uri": "/tmp/o/"}, **extra}})


def reference(root):
    """(path under root, size, mtime in ns) of every file os.walk finds outside `_` and `.` names, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        for name in files:
            if not name.startswith(("_", ".")):
                stat = os.stat(os.path.join(folder, name))
                found.append((os.path.relpath(os.path.join(folder, name), root), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def test_the_walk_stamps_every_file_as_os_stat_does_in_path_order(tmp_path):
    names = ["a", "a.txt", "b/c", "b/d/e", "b/d0", "b/_skip/f", "b/.git/g", "c", "d/x", "d/y", "e", "f/g/h/i"]
    for k, name in enumerate(names):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * k)
        os.utime(path, ns=(k * 10**9 + 123, k * 10**9 + 456))
    listing = _local_listing(str(tmp_path), None)
    assert list(zip(listing.rels, listing.sizes, listing.versions)) == reference(tmp_path)
    kept = _local_listing(str(tmp_path), lambda rel: rel != "b/d/e" and not rel.startswith("d/"))
    assert kept.rels == ["a", "a.txt", "b/c", "b/d0", "c", "e", "f/g/h/i"]
    assert kept.sizes == [names.index(rel) for rel in kept.rels]


@pytest.mark.parametrize("count", [2, 3, 7])
def test_the_plan_lines_of_several_files_a_mini_batch_are_their_json(count):
    sizes = [5, 0, 12, 7, 1, 3, 9]
    versions = [1700000000123456789, None, "0x8DC0E1", 3, None, "etag", 10**20]
    files = FileBatches(Listing([f"d/f{i}" for i in range(7)], sizes, versions), count)
    assert files.json_lines(0, len(files)) == [mb.to_json() for mb in files]
    assert files.json_lines(1, len(files)) == [mb.to_json() for mb in files[1:]]
    assert [MiniBatch.from_json(line) for line in files.json_lines(0, len(files))] == list(files)


def test_a_file_removed_after_its_folder_was_read_is_listed_unstamped(tmp_path):
    for name in ("a.bin", "b.bin", "c.bin"):
        (tmp_path / name).write_bytes(b"abc")

    def keep(rel):  # called between reading the folder and stamping its files
        if rel == "b.bin":
            os.remove(tmp_path / rel)
        return True

    listing = _local_listing(str(tmp_path), keep)
    assert listing.rels == ["a.bin", "b.bin", "c.bin"]
    assert listing.sizes == [3, 0, 3] and listing.versions[1] is None and isinstance(listing.versions[2], int)


def test_a_link_in_a_loop_is_planned_unstamped_and_leaves_no_folder_open(tmp_path):
    """A loop (ELOOP: neither a file nor a folder) is an item that will fail, not a refused run."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "ok.bin").write_bytes(b"x")
    (tmp_path / "a" / "b" / "zloop").symlink_to("zloop")
    (tmp_path / "a" / "yloop").symlink_to("b/../yloop")
    before = len(os.listdir("/proc/self/fd"))
    plan = make_plan(spec_for(str(tmp_path)))
    listing = plan.mini_batches.listing
    assert listing.rels == ["a/b/ok.bin", "a/b/zloop", "a/yloop"]
    assert listing.sizes == [1, 0, 0] and listing.versions[1:] == [None, None]
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("kind", ["files", "csv"])
@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_a_shard_takes_the_plan_made_in_its_process_as_it_would_read_it_back(tmp_path, kind, chunk):
    """Local mode: the mini-batches and lines of a chunk a shard holds come from the plan in
    memory, made as the chunk is taken, not parsed back from storage."""
    (tmp_path / "in").mkdir()
    for i in range(11):
        (tmp_path / "in" / f"f{i:02d}.csv").write_text("a\n" + "".join(f"{j}\n" for j in range(i + 1)))
    extra = {"input": {"format": "csv"}, "miniBatchSize": "8B"} if kind == "csv" else {"miniBatchSize": 1}
    spec = load_spec({"spec": {"input": {"uri": str(tmp_path / "in"), "type": "files" if kind == "files" else "tabular",
                                         **extra.pop("input", {})}, "code": {"entryScript": "s.py"},
                               "output": {"uri": str(tmp_path / "out")}, "nodeCount": 3, **extra}})
    fs, out = filesystem(str(tmp_path / "out"))
    layout = Layout(out, "run-1")
    planned = dataclasses.replace(make_plan(spec), chunk_mini_batches=chunk)
    write_plan(planned, fs, layout)
    read_back = read_plan(fs, layout)
    assert read_back.mini_batches is None and read_back.chunk_mini_batches == chunk
    here = ShardRunner(spec, planned, fs, layout, 0, scratch=str(tmp_path / "s"))
    stored = ShardRunner(spec, read_back, fs, layout, 0, scratch=str(tmp_path / "s"))
    for c in chunks(planned):
        here._take(c, None, count=False)
        stored._take(c, None, count=False)
    assert list(here._pending) == list(stored._pending) == list(planned.mini_batches)
    assert [here._lines[mb.id] for mb in here._pending] == [stored._lines[mb.id] for mb in here._pending]
