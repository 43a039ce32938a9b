"""Output places and the execution that claimed them last (owners.py), on memory://."""

import uuid

import fsspec
from parallelrun.runner.pipelines.owners import claim, owned


def test_an_output_place_belongs_to_the_execution_that_claimed_it_last():
    fs, workdir = fsspec.filesystem("memory"), f"memory://owners-{uuid.uuid4().hex}/work"
    outputs = {"model": f"{workdir}/run/train/model/", "report": f"{workdir}/run/train/report"}
    assert not owned(fs, workdir, outputs, "f1")  # never claimed
    claim(fs, workdir, outputs, "f1")
    assert owned(fs, workdir, outputs, "f1") and owned(fs, workdir, {}, "f1")
    claim(fs, workdir, {"model": f"{workdir}/run/train/model"}, "f2")  # the same place, without its slash
    assert not owned(fs, workdir, outputs, "f1")
    assert owned(fs, workdir, {"report": outputs["report"]}, "f1")


def test_the_reuse_decision_needs_the_entry_the_outputs_and_their_ownership():
    from datetime import datetime, timezone

    from parallelrun.runner.pipelines import reuse
    from parallelrun.runner.pipelines.owners import reusable
    from parallelrun.runner.pipelines.resolved import ResolvedStep

    fs, workdir = fsspec.filesystem("memory"), f"memory://reusable-{uuid.uuid4().hex}/work"
    outputs = {"model": f"{workdir}/run/train/model/"}
    step = ResolvedStep(name="train", kind="component", run="run", outputs=outputs, fingerprint="f1", command="true")
    assert reusable(fs, workdir, step, needs_reused=True) is None  # no entry
    reuse.write_entry(fs, workdir, reuse.index_entry("f1", outputs, "run", "train", datetime.now(timezone.utc)))
    assert reusable(fs, workdir, step, needs_reused=True) is None  # no outputs there
    fs.pipe_file(f"{workdir}/run/train/model/model.joblib", b"m")
    assert reusable(fs, workdir, step, needs_reused=True) is None  # nobody claimed the place
    claim(fs, workdir, outputs, "f1")
    assert reusable(fs, workdir, step, needs_reused=False)["outputs"] == outputs  # outputs: upstream reruns are fine
    assert reusable(fs, workdir, ResolvedStep(**{**vars(step), "reuse": False}), needs_reused=True) is None
    effects = ResolvedStep(name="publish", kind="container", run="run", outputs={}, fingerprint="f9", command=["true"])
    reuse.write_entry(fs, workdir, reuse.index_entry("f9", {}, "run", "publish", datetime.now(timezone.utc)))
    assert reusable(fs, workdir, effects, needs_reused=True)["step"] == "publish"
    assert reusable(fs, workdir, effects, needs_reused=False) is None  # its effects may be stale after a rerun
