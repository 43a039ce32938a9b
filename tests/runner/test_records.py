"""The typed records of runner/records.py against the bytes runs write: each record's to_dict()
gives the JSON the writers have always written, and files written by earlier versions read."""

from __future__ import annotations

import json
import time

import pytest

from parallelrun.runner.commits import read_commits
from parallelrun.runner.layout import Layout
from parallelrun.runner.records import DoneRecord, ErrorLine, LockHolder, OutputOwner, RunResult
from parallelrun.runner.report import Report, _failures_from_errors
from parallelrun.runner.storage import filesystem

# errors.jsonl lines as the merge writes them (json.dumps, default separators), one of each kind.
ERROR_LINES = [
    '{"miniBatch": 0, "item": "/in/a.png", "source": {"files": ["/in/a.png", "/in/b.png"]}, "items": 1, '
    '"attempts": 3, "error": "ValueError: bad \\"pixel\\"", "traceback": "Traceback (most recent call last):\\n"}',
    '{"miniBatch": 4, "item": null, "source": {"file": "/in/x.parquet", "rows": [0, 100]}, "items": 100, '
    '"attempts": 1, "error": "TimeoutError: run() took more than 60 s", "traceback": null}',
    '{"miniBatch": 5, "item": null, "source": {"file": "/in/y.csv", "bytes": [0, 4096]}, "items": 0, '
    '"attempts": 2, "error": "worker died", "traceback": null}',
    '{"miniBatch": 6, "item": "req-7", "source": {"files": ["/in/k/1.txt"], "key": {"species": "setosa"}}, '
    '"items": 1, "attempts": 1, "error": "r\\u00e9fus\\u00e9: 400", "traceback": null}',
]


@pytest.mark.parametrize("line", ERROR_LINES)
def test_an_error_line_round_trips_to_the_same_bytes(line):
    record = ErrorLine.from_dict(json.loads(line))
    assert json.dumps(record.to_dict()) == line
    assert ErrorLine.from_dict(record.to_dict()) == record


def test_error_lines_of_the_first_runs_read():
    """The first version wrote a file's line without source and items, a row range's without item."""
    files = ErrorLine.from_dict(json.loads('{"item": "/in/a.png", "miniBatch": 2, "attempts": 3, "error": "boom", '
                                           '"traceback": null}'))
    rows = ErrorLine.from_dict(json.loads('{"source": {"file": "/in/x.csv", "rows": [0, 9]}, "items": 9, '
                                          '"miniBatch": 3, "attempts": 1, "error": "boom", "traceback": "tb"}'))
    assert files == ErrorLine(2, "/in/a.png", {}, 1, 3, "boom", None)
    assert rows == ErrorLine(3, None, {"file": "/in/x.csv", "rows": [0, 9]}, 9, 1, "boom", "tb")


def test_a_commit_line_of_a_failed_mini_batch_reads_its_error_lines_and_writes_them_again(tmp_path):
    """A commit file as runs write it: its records' errors come back as ErrorLines, the same JSON."""
    errors = ",".join(json.dumps(json.loads(line), separators=(",", ":")) for line in ERROR_LINES[:1])
    line = (f'{{"id":0,"status":"failed","items":2,"attempts":3,"errors":[{errors}],"schema":null,'
            f'"succeeded":0,"failed":2,"part":null,"report":null}}')
    layout = Layout(str(tmp_path), "job-0123456789")
    folder = tmp_path / "_parallelrun" / "job-0123456789" / "commits" / "00000"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(line + "\n")
    fs, _ = filesystem(str(tmp_path))
    [record] = read_commits(fs, layout, [0]).values()
    assert record.errors == [ErrorLine.from_dict(json.loads(ERROR_LINES[0]))]
    assert json.dumps(record.to_dict(), separators=(",", ":")) == line
    assert DoneRecord.from_dict(record.to_dict()) == record


def test_the_report_groups_the_error_lines_of_a_run_and_skips_what_is_no_line(tmp_path):
    layout = Layout(str(tmp_path), "job-0123456789")
    (tmp_path / "_parallelrun" / "job-0123456789").mkdir(parents=True)
    text = "\n".join([*ERROR_LINES, '{"miniBatch": 9, "item": null', '{"note": "not an error line"}',
                      '{"miniBatch": 8, "attempts": 1, "error": "worker died"}']) + "\n"
    (tmp_path / "_parallelrun" / "job-0123456789" / "errors.jsonl").write_text(text)
    fs, _ = filesystem(str(tmp_path))
    report = Report(layout.run_id, layout.root, "Succeeded", 0.0, None, None, None, {})
    _failures_from_errors(fs, layout, report)
    examples = sorted((mb, error, g.attempts, g.items) for g in report.error_groups for mb, error in g.examples)
    assert [(mb, error) for mb, error, _, _ in examples] == [
        (0, 'ValueError: bad "pixel"'), (4, "TimeoutError: run() took more than 60 s"), (5, "worker died"),
        (6, "réfusé: 400"), (8, "worker died")]
    assert [(attempts, items) for mb, _, attempts, items in examples if mb in (4, 5)] == [(1, 100), (2, 1)]


# A lock file as RunLock writes it (json.dumps of its holder).
LOCK_FILE = ('{"pid": 4242, "host": "node-1", "token": "0123456789abcdef0123456789abcdef", '
             '"since": "2026-12-07T04:55:00+00:00", "heartbeat": 1796533000.25}')


def test_a_lock_holder_round_trips_to_the_same_bytes():
    holder = LockHolder.from_text(LOCK_FILE)
    assert holder == LockHolder(4242, "node-1", "0123456789abcdef0123456789abcdef", "2026-12-07T04:55:00+00:00",
                                1796533000.25)
    assert json.dumps(holder.to_dict()) == LOCK_FILE
    assert LockHolder.from_text(LOCK_FILE.encode()) == holder


def test_a_lock_file_still_empty_names_no_one_and_a_half_written_one_is_refused():
    assert LockHolder.from_text("") == LockHolder() and LockHolder().to_dict() == {}
    for text in ('{"pid": 42, "ho', "[1, 2]"):
        with pytest.raises(ValueError):
            LockHolder.from_text(text)


def test_the_holder_of_a_run_is_read_from_its_lock_by_status_and_by_a_second_run(tmp_path):
    """A lock file written the way runs write it: held_by names its holder (on object storage while its
    heartbeat is fresh), a second RunLock is refused with its pid, host and since."""
    import fsspec

    from parallelrun.runner import lock

    fs = fsspec.filesystem("memory")
    path = lock.lock_path("/holder-test/out", "run-1")
    fresh = json.dumps(dict(json.loads(LOCK_FILE), heartbeat=time.time()))
    fs.pipe_file(path, fresh.encode())
    assert lock.held_by(fs, "/holder-test/out", "run-1") == LockHolder.from_text(fresh)
    with pytest.raises(lock.RunLocked, match=r"pid 4242 on node-1, since 2026-12-07T04:55:00\+00:00"):
        lock.RunLock(fs, "/holder-test/out", "run-1").acquire()
    fs.pipe_file(path, LOCK_FILE.encode())  # its heartbeat long past: its holder is gone
    assert lock.held_by(fs, "/holder-test/out", "run-1") is None


# An output place's owner claim as pipelines/owners.claim writes it.
OWNER_CLAIM = '{"uri": "file:///work/run-1/train/model", "execution": "9f1c0e5d2b7a48c6a1e3f0d4b5c6a7e8"}'


def test_an_output_owner_claim_round_trips_to_the_same_bytes():
    owner = OutputOwner.from_dict(json.loads(OWNER_CLAIM))
    assert owner == OutputOwner("file:///work/run-1/train/model", "9f1c0e5d2b7a48c6a1e3f0d4b5c6a7e8")
    assert json.dumps(owner.to_dict()) == OWNER_CLAIM
    for other in ([], {"uri": "x"}, {"uri": "x", "execution": 7}, {"fingerprint": "f", "run": "r"}):
        with pytest.raises(ValueError):
            OutputOwner.from_dict(other)


def test_an_owner_claim_file_decides_which_execution_owns_the_place(tmp_path):
    """A claim file written as runs write it is read by owned(); a claim cut short or another's owns nothing."""
    from parallelrun.runner.pipelines import owners

    fs, workdir = filesystem(str(tmp_path))
    outputs = {"model": "file:///work/run-1/train/model"}
    path = owners.owner_path(workdir, outputs["model"])
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, OWNER_CLAIM.encode())
    assert owners.owned(fs, workdir, outputs, "9f1c0e5d2b7a48c6a1e3f0d4b5c6a7e8")
    assert not owners.owned(fs, workdir, outputs, "another")
    assert not owners.owned(fs, workdir, outputs, None)
    for text in (OWNER_CLAIM[:20], '["9f1c0e5d2b7a48c6a1e3f0d4b5c6a7e8"]'):
        fs.pipe_file(path, text.encode())
        assert not owners.owned(fs, workdir, outputs, "9f1c0e5d2b7a48c6a1e3f0d4b5c6a7e8")
    owners.claim(fs, workdir, outputs, "9f1c0e5d2b7a48c6a1e3f0d4b5c6a7e8")
    assert fs.cat_file(path).decode() == OWNER_CLAIM


# `parallelrun run -o json` documents as the CLI prints them (json.dumps, indent 2): a run that
# succeeded (summary.json's keys, with its seconds and logs), one stopped by a threshold (its summary,
# the reason), one interrupted, an invalid file, a run that never started, a pipeline.
_SUMMARY = {"runId": "job-0123456789", "status": "Succeeded", "reason": None,
            "miniBatches": {"succeeded": 3, "failed": 0, "total": 3}, "items": {"succeeded": 2, "failed": 3},
            "plan": {"miniBatches": 3, "items": 5, "bytes": 50},
            "thresholds": {"errorThreshold": -1, "miniBatchErrorThreshold": -1, "allowedFailedPercent": 100},
            "output": {"uri": "/out/parallel_run_step.txt", "bytes": 12},
            "errors": "/out/_parallelrun/job-0123456789/errors.jsonl",
            "summary": "/out/_parallelrun/job-0123456789/summary.json", "finishedAt": "2026-12-07T04:55:00+00:00"}
RUN_RESULTS = [
    {"file": "job.yaml", "kind": "BatchInferenceJob", "exitCode": 0, **_SUMMARY, "seconds": 1.25, "logs": "/tmp/l"},
    {"file": "job.yaml", "kind": "BatchInferenceJob", "exitCode": 1,
     **dict(_SUMMARY, status="Failed", reason="errorThreshold 0 exceeded", output=None,
            previousOutput="/out/parallel_run_step.txt.failed-job-0123456789"),
     "seconds": 0.5, "logs": "/tmp/l", "error": "stopped: errorThreshold 0 exceeded; details in /out/errors.jsonl"},
    {"file": "job.yaml", "kind": "BatchInferenceJob", "exitCode": 130, **dict(_SUMMARY, status="Interrupted"),
     "error": "interrupted; run the same command again to resume run job-0123456789"},
    {"file": "job.yaml", "kind": "BatchInferenceJob", "exitCode": 2, "status": "Invalid",
     "errors": ["spec.nodeCount: 0 is below 1; use 1 or more"]},
    {"file": "job.yaml", "kind": "BatchInferenceJob", "exitCode": 2, "status": "Failed",
     "error": "failed: run job-0123456789 is already running (pid 7 on h, since 2026-12-07T04:55:00+00:00)"},
    {"file": "job.yaml", "kind": "BatchInferenceJob", "exitCode": 130, "status": "Interrupted"},
    {"file": "p.yaml", "kind": "PipelineRun", "exitCode": 1, "status": "Failed"},
]


@pytest.mark.parametrize("document", RUN_RESULTS, ids=lambda d: f"{d['kind']}-{d['exitCode']}-{d['status']}")
def test_a_run_result_round_trips_to_the_same_bytes(document):
    text = json.dumps(document, indent=2)
    result = RunResult.from_dict(json.loads(text))
    assert json.dumps(result.to_dict(), indent=2) == text
    assert result.status == document["status"] and result.exit_code == document["exitCode"]
    assert (result.summary is not None) == ("runId" in document)


def test_what_is_no_run_result_is_refused():
    for other in ({}, [], {"status": 1}, "Succeeded"):
        with pytest.raises(ValueError):
            RunResult.from_dict(other)


@pytest.mark.parametrize(("document", "expected"), [
    (RUN_RESULTS[0], (3, 3, 3, "/out/_parallelrun/job-0123456789/errors.jsonl")),
    (dict(RUN_RESULTS[0], items={"succeeded": 5, "failed": 0}), (3, 3, 0, None)),
    (RUN_RESULTS[3], (1, 4, None, None)),  # Invalid: its errors are problems of the file, not errors.jsonl
    (RUN_RESULTS[4], (1, 4, None, None)),
])
def test_a_pipelines_batch_step_reads_its_counts_from_the_result_file(tmp_path, document, expected):
    """The result file a batchInference step's `parallelrun run -o json` left, as the CLI writes it; one
    without a summary keeps the counts seen while it ran, and a file cut short reads as none."""
    from parallelrun.runner.pipelines.local import _ended
    from parallelrun.runner.pipelines.progress import StepRecord

    path = tmp_path / "score.result.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    record = StepRecord("score", done=1, total=4, failed_items=2)
    _ended(record, str(path))
    assert (record.done, record.total, record.failed_items, record.errors) == expected
    path.write_text(json.dumps(document, indent=2)[:40])
    record = StepRecord("score", done=1, total=4, failed_items=2)
    _ended(record, str(path))
    assert (record.done, record.total, record.failed_items, record.errors) == (1, 4, None, None)
