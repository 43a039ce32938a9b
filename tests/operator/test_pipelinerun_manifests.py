"""A PipelineRun's child names and what its children say: pure functions."""

from __future__ import annotations

import re

from parallelrun.operator.kit.children import Owner, child_name
from parallelrun.operator.pipelines.manifests import child_annotations, cluster_errors, step_labels
from parallelrun.operator.pipelines.status import batch_job_child, job_child, step_states
from parallelrun.runner.api import LABEL_RUN_UID, LABEL_STEP, PIPELINE_RUN
from parallelrun.runner.pipelines.resolved import ResolvedStep
from parallelrun.runner.pipelines.spec import load_pipeline

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_child_names_are_run_dash_step_and_stay_short_and_distinct():
    assert child_name("iris", "score") == "iris-score"
    run, steps = "a-very-long-pipeline-run-name-made-by-a-schedule-202601310600", ["x" * 63, "x" * 62 + "y", "score"]
    names = [child_name(run, s) for s in steps]
    assert len(set(names)) == 3
    assert all(len(n) <= 52 and _DNS_LABEL.match(n) for n in names)
    assert names == [child_name(run, s) for s in steps]  # deterministic: a restart finds them
    labels = step_labels(Owner(PIPELINE_RUN, run * 2, "ns", "uid-1"), "x" * 63)
    assert len(labels["parallelrun.dev/pipelinerun"]) <= 63 and labels[LABEL_RUN_UID] == "uid-1"


def _job(conditions: list[dict], outputs: str = '{"model": "az://w/r/train/model/"}') -> dict:
    return {"metadata": {"name": "r-train", "labels": {LABEL_STEP: "train"},
                         "annotations": {"parallelrun.dev/fingerprint": "f" * 64, "parallelrun.dev/outputs": outputs}},
            "status": {"conditions": conditions}}


def test_a_jobs_state_comes_from_its_conditions():
    running = job_child(_job([]))
    assert (running.step, running.name, running.phase) == ("train", "r-train", "Running")
    assert running.outputs == {"model": "az://w/r/train/model/"} and running.fingerprint == "f" * 64
    assert job_child(_job([{"type": "Complete", "status": "True"}])).phase == "Succeeded"
    failed = job_child(_job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                              "message": "Job has reached the specified backoff limit"}]))
    assert failed.phase == "Failed"
    assert failed.message == "Job r-train failed (BackoffLimitExceeded: Job has reached the specified backoff limit)"
    assert job_child(_job([], outputs="not json")).outputs == {}


def test_a_batch_jobs_state_comes_from_its_phase():
    body = {"metadata": {"name": "r-score", "labels": {LABEL_STEP: "score"},
                         "annotations": child_annotations(ResolvedStep(
                             "score", "batchInference", "r", {"output": "az://o/", "outputFile": "az://o/f.txt"},
                             "f" * 64))}}
    assert batch_job_child(dict(body, status={"phase": "Planning"})).phase == "Running"
    done = batch_job_child(dict(body, status={"phase": "Succeeded"}))
    assert done.phase == "Succeeded" and done.outputs == {"output": "az://o/", "outputFile": "az://o/f.txt"}
    failed = batch_job_child(dict(body, status={"phase": "Failed", "message": "31 failed items", "conditions": [
        {"type": "Failed", "status": "True", "reason": "ErrorThresholdExceeded"}]}))
    assert failed.message == "BatchInferenceJob r-score failed (ErrorThresholdExceeded): 31 failed items"


def test_step_states_read_reuse():
    assert step_states({"a": {"phase": "Succeeded", "reused": True}, "b": {"phase": "Succeeded", "reused": False},
                        "c": {"phase": "Skipped"}}) == {"a": "Reused", "b": "Succeeded", "c": "Skipped"}


def test_cluster_errors_name_what_a_cluster_cannot_run():
    spec = load_pipeline({"workdir": "work/", "steps": [
        {"name": "train", "component": {"uri": "components/train.yaml"}},
        {"name": "publish", "container": {"command": ["python", "publish.py"]}},
        {"name": "ok", "container": {"image": "tools:1", "command": ["true"]}},
    ], "finally": [{"name": "notify", "container": {"command": ["echo"]}}]})
    errors = cluster_errors(spec, default_image=None)
    assert [e.split(":")[0] for e in errors] == ["spec.workdir", "spec.steps[0].component.uri",
                                                 "spec.steps[1].container.image", "spec.finally[0].container.image"]
    assert "'work/' is a relative path, which means nothing on a cluster" in errors[0]
    assert [e.split(":")[0] for e in cluster_errors(spec, default_image="tools:1")] == [
        "spec.workdir", "spec.steps[0].component.uri"]
    absolute = load_pipeline({"workdir": "az://w/", "steps": [{"name": "a", "container": {"command": ["true"]}}]})
    assert cluster_errors(absolute, default_image="tools:1") == []
