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
