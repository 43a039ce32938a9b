"""A files mini-batch on the local disk: the paths run() gets, and each file checked against its stamp."""

import os

import pytest

from parallelrun.runner.planning import make_plan
from parallelrun.runner.readers import InputChangedError, Reader
from parallelrun.runner.spec import load_spec


def plan_of(uri, **extra):
    return make_plan(load_spec({"spec": {"input": {"uri": uri, "type": "files"}, "code": {"entryScript": "s.py"},
                                         "output": {"uri": "/tmp/o/"}, "miniBatchSize": 10, **extra}}))


@pytest.mark.parametrize("root", ["{tmp}/in", "{tmp}/in/", "{tmp}/x/../in", "{tmp}/./in", "{tmp}//in", "file://{tmp}/in"])
def test_the_paths_are_absolute_and_normalized_whatever_the_input_uri(tmp_path, root, monkeypatch):
    for name in ("a.txt", "sub/b.txt", "sub/.c.d/e.txt", "f..g"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text(name)
    (tmp_path / "x").mkdir()
    monkeypatch.chdir(tmp_path)
    plan = plan_of(root.format(tmp=tmp_path))
    [mb] = plan.mini_batches
    paths, items = Reader(plan, str(tmp_path / "scratch")).read(mb)
    assert items == 3 and paths == [os.path.abspath(f"{tmp_path}/in/{rel}") for rel in mb.files]
    assert [p.removeprefix(f"{tmp_path}/in/") for p in paths] == ["a.txt", "f..g", "sub/b.txt"]


def test_a_file_changed_since_planning_fails_its_mini_batch_naming_it(tmp_path):
    for i in range(3):
        (tmp_path / f"f{i}").write_text("abc")
    plan = plan_of(str(tmp_path))
    [mb] = plan.mini_batches
    reader = Reader(plan, str(tmp_path / "scratch"))
    os.utime(tmp_path / "f1", ns=(1, 1))
    with pytest.raises(InputChangedError, match=r"/f1 changed since planning \(rewritten\)"):
        reader.read(mb)
    (tmp_path / "f2").write_text("abcd")
    os.utime(tmp_path / "f1", ns=(mb.stamps[3], mb.stamps[3]))
    with pytest.raises(InputChangedError, match=r"/f2 changed since planning \(size 3 → 4\)"):
        reader.read(mb)
    (tmp_path / "f2").unlink()
    with pytest.raises(FileNotFoundError):
        reader.read(mb)


def test_a_file_planned_without_a_version_is_compared_by_size(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "later")  # planned with size 0 and no version
    plan = plan_of(str(tmp_path))
    (tmp_path / "later").write_text("")
    [mb] = plan.mini_batches
    assert mb.stamps == (0, None)
    assert Reader(plan, str(tmp_path / "scratch")).read(mb) == ([f"{tmp_path}/dangling"], 1)
