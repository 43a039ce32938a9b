"""Reuse: fingerprints, the decision, and the index in the workdir (on memory://)."""

import uuid
from datetime import datetime, timedelta, timezone

import fsspec
import pytest

from parallelrun.runner.pipelines.reuse import (
    decide,
    fingerprint,
    folder_digest,
    index_entry,
    index_path,
    outputs_exist,
    read_entry,
    write_entry,
)
from parallelrun.runner.records import ReuseEntry

STEP = {"name": "train", "component": {"uri": "az://c/train/component.yaml"},
        "inputs": {"data": "az://data/", "max_iter": 500, "options": {"a": 1, "b": [1, 2]}}}
COMPONENT = b"name: train_iris\nversion: '1.2'\ncommand: python train.py\n"


@pytest.fixture
def memory():
    """A memory:// filesystem and a fresh workdir in it, removed afterwards."""
    fs = fsspec.filesystem("memory")
    workdir = f"memory://pipelines-{uuid.uuid4().hex}/iris"
    yield fs, workdir
    fs.rm(workdir.rsplit("/", 1)[0], recursive=True)


def test_fingerprint_is_stable_across_key_order():
    reordered = {"inputs": {"options": {"b": [1, 2], "a": 1}, "max_iter": 500, "data": "az://data/"},
                 "component": {"uri": "az://c/train/component.yaml"}, "name": "train"}
    assert fingerprint(STEP, COMPONENT, "abc") == fingerprint(reordered, COMPONENT, "abc")
    assert len(fingerprint(STEP, None, None)) == 64


def test_fingerprint_follows_what_the_step_produces():
    base = fingerprint(STEP, COMPONENT, "abc")
    changed = {**STEP, "inputs": {**STEP["inputs"], "max_iter": 501}}
    assert fingerprint(changed, COMPONENT, "abc") != base
    assert fingerprint({**STEP, "inputs": {**STEP["inputs"], "max_iter": "500"}}, COMPONENT, "abc") != base
    assert fingerprint(STEP, COMPONENT + b"# new version\n", "abc") != base
    assert fingerprint(STEP, None, "abc") != base
    assert fingerprint(STEP, COMPONENT, "abd") != base
    assert fingerprint(STEP, COMPONENT, None) != base


def test_fingerprint_ignores_fields_that_do_not_change_the_result():
    same = {**STEP, "name": "train-again", "retries": 3, "reuse": True, "dependsOn": ["prepare"]}
    assert fingerprint(same, COMPONENT, "abc") == fingerprint(STEP, COMPONENT, "abc")


def _entry(fingerprint: str) -> ReuseEntry:
    return ReuseEntry(fingerprint, {}, "run-1", "train", "2025-01-31T06:30:00Z")


@pytest.mark.parametrize(("entry", "outputs_there", "reuse", "expected"), [
    (_entry("f1"), True, True, True),
    (_entry("f1"), True, False, False),  # reuse: false
    (_entry("f1"), False, True, False),  # outputs deleted since
    (None, True, True, False),  # never ran
    (_entry("f2"), True, True, False),  # an entry for another fingerprint
])
def test_decide(entry, outputs_there, reuse, expected):
    assert decide("f1", entry, outputs_there, reuse) is expected


def test_index_layout():
    assert index_path("az://pipelines/iris/", "ab12") == "az://pipelines/iris/_parallelrun/cache/ab12.json"
    finished = datetime(2025, 1, 31, 7, 30, tzinfo=timezone(timedelta(hours=1)))
    assert index_entry("ab12", {"model": "az://w/run-1/train/model/"}, "run-1", "train", finished).to_dict() == {
        "fingerprint": "ab12", "outputs": {"model": "az://w/run-1/train/model/"}, "run": "run-1", "step": "train",
        "finishedAt": "2025-01-31T06:30:00Z"}


def test_a_later_run_reuses_through_the_index(memory):
    fs, workdir = memory
    fp = fingerprint(STEP, COMPONENT, None)
    model = f"{workdir}/run-1/train/model/"
    assert read_entry(fs, workdir, fp) is None
    assert not decide(fp, read_entry(fs, workdir, fp), True, True)

    fs.pipe_file(model + "model.joblib", b"weights")
    entry = index_entry(fp, {"model": model}, "run-1", "train", datetime.now(timezone.utc))
    write_entry(fs, workdir, entry)
    assert fs.exists(index_path(workdir, fp))
    found = read_entry(fs, workdir, fp)
    assert found == entry
    assert decide(fp, found, outputs_exist(fs, found.outputs), reuse=True)

    fs.rm(model, recursive=True)
    assert not decide(fp, found, outputs_exist(fs, found.outputs), reuse=True)


def test_an_unreadable_entry_means_run_again(memory):
    fs, workdir = memory
    fs.pipe_file(index_path(workdir, "bad"), b"{not json")
    fs.pipe_file(index_path(workdir, "list"), b"[1, 2]")
    fs.pipe_file(index_path(workdir, "other"), b'{"fingerprint": "other", "run": 3}')
    assert all(read_entry(fs, workdir, name) is None for name in ("bad", "list", "other"))


def test_the_index_works_on_a_local_folder(tmp_path):
    fs = fsspec.filesystem("file")
    write_entry(fs, str(tmp_path / "work"), _entry("f"))
    assert read_entry(fs, str(tmp_path / "work"), "f") == _entry("f")


def test_folder_digest_follows_names_and_contents_but_not_caches(memory):
    fs, workdir = memory
    code = f"{workdir}/code"
    fs.pipe_file(f"{code}/score.py", b"def run(batch): return batch\n")
    fs.pipe_file(f"{code}/lib/util.py", b"X = 1\n")
    before = folder_digest(fs, code)
    assert folder_digest(fs, code + "/") == before
    fs.pipe_file(f"{code}/__pycache__/score.cpython-311.pyc", b"\x00")
    fs.pipe_file(f"{code}/lib/util.pyc", b"\x00")
    fs.pipe_file(f"{code}/_parallelrun/run-1/plan.json", b"{}")
    assert folder_digest(fs, code) == before
    fs.pipe_file(f"{code}/lib/util.py", b"X = 2\n")
    changed = folder_digest(fs, code)
    assert changed != before
    fs.mv(f"{code}/lib/util.py", f"{code}/lib/utils.py")
    assert folder_digest(fs, code) not in (before, changed)
