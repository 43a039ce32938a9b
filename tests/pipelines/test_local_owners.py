"""Output places, the execution that claimed them last, and the reuse decision (owners.py), on memory://."""

import uuid
from datetime import datetime, timezone

import fsspec

from parallelrun.runner.pipelines import reuse
from parallelrun.runner.pipelines.owners import claim, new_execution, owned, reusable
from parallelrun.runner.pipelines.resolved import ResolvedStep


def entry(step: ResolvedStep, outputs: dict, execution: str, now: datetime):
    return reuse.index_entry(step.fingerprint, outputs, step.run, step.name, now, execution)


def test_an_output_place_belongs_to_the_execution_that_claimed_it_last():
    fs, workdir = fsspec.filesystem("memory"), f"memory://owners-{uuid.uuid4().hex}/work"
    outputs = {"model": f"{workdir}/run/train/model/", "report": f"{workdir}/run/train/report"}
    first, second = new_execution(), new_execution()
    assert first != second
    assert not owned(fs, workdir, outputs, first)  # never claimed
    claim(fs, workdir, outputs, first)
    assert owned(fs, workdir, outputs, first) and owned(fs, workdir, {}, first)
    assert not owned(fs, workdir, outputs, None)  # an entry from before claims
    claim(fs, workdir, {"model": f"{workdir}/run/train/model"}, second)  # the same place, without its slash
    assert not owned(fs, workdir, outputs, first)
    assert owned(fs, workdir, {"report": outputs["report"]}, first)


def test_the_reuse_decision_needs_the_entry_the_outputs_and_their_ownership():
    fs, workdir = fsspec.filesystem("memory"), f"memory://reusable-{uuid.uuid4().hex}/work"
    outputs = {"model": f"{workdir}/run/train/model/"}
    step = ResolvedStep(name="train", kind="component", run="run", outputs=outputs, fingerprint="f1", command="true")
    now = datetime.now(timezone.utc)
    assert reusable(fs, workdir, step, needs_reused=True) is None  # no entry
    done = new_execution()
    claim(fs, workdir, outputs, done)
    reuse.write_entry(fs, workdir, entry(step, outputs, done, now))
    assert reusable(fs, workdir, step, needs_reused=True) is None  # no outputs there
    fs.pipe_file(f"{workdir}/run/train/model/model.joblib", b"m")
    assert reusable(fs, workdir, step, needs_reused=False).outputs == outputs  # upstream reruns are fine
    assert reusable(fs, workdir, ResolvedStep(**{**vars(step), "reuse": False}), needs_reused=True) is None
    claim(fs, workdir, outputs, new_execution())  # the same step again, which failed halfway: no entry of its own
    assert reusable(fs, workdir, step, needs_reused=True) is None
    effects = ResolvedStep(name="publish", kind="container", run="run", outputs={}, fingerprint="f9", command=["true"])
    reuse.write_entry(fs, workdir, entry(effects, {}, new_execution(), now))
    assert reusable(fs, workdir, effects, needs_reused=True).step == "publish"
    assert reusable(fs, workdir, effects, needs_reused=False) is None  # its effects may be stale after a rerun
