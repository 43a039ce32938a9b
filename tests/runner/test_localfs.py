"""LocalFS answers as fsspec's LocalFileSystem does, for every call it makes itself."""

import os

import fsspec
import pytest

from parallelrun.runner.localfs import LocalFS, local_path
from parallelrun.runner.storage import filesystem, is_local, strip_protocol


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(bytes(range(10)))
    (tmp_path / "sub" / "b.txt").write_text("é\nline two\n", encoding="utf-8")
    (tmp_path / "link").symlink_to(tmp_path / "a.bin")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    return tmp_path


def _outcome(call):
    try:
        return "ok", call()
    except Exception as e:  # noqa: BLE001 - the kind of error is part of the answer
        return "raises", type(e).__name__


@pytest.mark.parametrize("name", ["a.bin", "sub", "link", "dangling", "missing", "sub/b.txt", "sub/"])
def test_questions_are_answered_alike(tree, name):
    ours, theirs = LocalFS(), fsspec.filesystem("file")
    path = f"{tree}/{name}"
    for method in ("exists", "isfile", "isdir", "size"):
        assert _outcome(lambda: getattr(ours, method)(path)) == _outcome(lambda: getattr(theirs, method)(path)), method
    assert _outcome(lambda: sorted(ours.ls(path))) == _outcome(lambda: sorted(theirs.ls(path, detail=False)))
    for start, end in [(None, None), (2, None), (2, 5), (-3, None), (1, -2), (-4, -1), (20, None)]:
        assert _outcome(lambda: ours.cat_file(path, start, end)) == _outcome(lambda: theirs.cat_file(path, start, end))


def test_reading_and_writing_alike(tree):
    ours, theirs = LocalFS(), fsspec.filesystem("file")
    with ours.open(f"{tree}/sub/b.txt", "rt", encoding="utf-8") as f, \
            theirs.open(f"{tree}/sub/b.txt", "rt", encoding="utf-8") as g:
        assert f.read() == g.read()
    ours.pipe_file(f"{tree}/new.bin", b"new")
    assert theirs.cat_file(f"{tree}/new.bin") == b"new"
    with pytest.raises(FileExistsError):
        ours.pipe_file(f"{tree}/new.bin", b"again", mode="create")
    with ours.open(f"{tree}/w.txt", "wt") as f:
        f.write("text")
    assert (tree / "w.txt").read_text() == "text"
    ours.mv(f"{tree}/w.txt", f"{tree}/sub/moved.txt")
    assert (tree / "sub" / "moved.txt").read_text() == "text" and not (tree / "w.txt").exists()
    ours.makedirs(f"{tree}/deep/er", exist_ok=True)
    with pytest.raises(FileExistsError):
        ours.makedirs(f"{tree}/deep/er")
    with pytest.raises(ValueError, match="recursive"):
        ours.rm(f"{tree}/deep")
    ours.rm(f"{tree}/deep", recursive=True)
    ours.rm_file(f"{tree}/new.bin")
    assert not (tree / "deep").exists() and not (tree / "new.bin").exists()
    assert ours.find(str(tree)) == theirs.find(str(tree))  # not its own: fsspec's, imported for it


@pytest.mark.parametrize("uri", ["/tmp/x/", "/tmp/x", "relative/dir/", "./here", ".", "file:///tmp/y/", "~/z",
                                 "local:///tmp/w", "/"])
def test_paths_are_fsspecs(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs, path = filesystem(uri)
    theirs, their_path = fsspec.core.url_to_fs(uri)
    assert isinstance(fs, LocalFS) and is_local(fs) and is_local(theirs)
    assert path == (their_path.rstrip("/") or their_path)
    assert strip_protocol(uri) == LocalFS._strip_protocol(uri) == type(theirs)._strip_protocol(uri)


@pytest.mark.parametrize("uri", ["memory://x/", "az://c/p", "simplecache::file:///tmp/x", "s3://b/k", "C:/x"])
def test_other_uris_are_left_to_fsspec(uri):
    assert local_path(uri) is None


def test_a_local_filesystem_crosses_processes_as_itself():
    import pickle

    assert isinstance(pickle.loads(pickle.dumps(LocalFS())), LocalFS)
    assert os.fspath(LocalFS().unstrip_protocol("/a/b")) == fsspec.filesystem("file").unstrip_protocol("/a/b")
