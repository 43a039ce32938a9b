"""Every URI field on the cluster: what the operator reads or writes itself names storage shared with the pods.

Each field of each kind, with a local path, a file:// URI and memory://, judged as the
operator judges a spec before anything runs (cluster_errors, cluster_checked).
"""

from __future__ import annotations

import pytest

from parallelrun.operator.jobs.manifests import cluster_errors as job_cluster_errors
from parallelrun.operator.pipelines.manifests import cluster_errors as pipeline_cluster_errors
from parallelrun.operator.schedules.controller import cluster_checked
from parallelrun.runner.pipelines.spec import load_pipeline
from parallelrun.runner.schedules.spec import ScheduleSpecError, load_schedule
from parallelrun.runner.spec import load_spec

LOCAL = {"a path": "/etc/", "file://": "file:///data/in/", "memory://": "memory://bucket/in/"}
SHARED = "az://data/in/"


def job(**spec) -> dict:
    base = {"input": {"uri": "az://data/iris/", "type": "files"}, "code": {"entryScript": "score.py"},
            "output": {"uri": "az://out/iris/"}}
    return load_spec({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                      "metadata": {"name": "j"}, "spec": {**base, **spec}})


def job_with(field: str, uri: str, **spec):
    """A valid job with `uri` at `field`."""
    fields = {
        "spec.input.uri": {"input": {"uri": uri, "type": "files"}},
        "spec.input.manifest": {"input": {"manifest": uri + "manifest.txt", "type": "files"}},
        "spec.output.uri": {"output": {"uri": uri}},
        "spec.code.uri": {"code": {"uri": uri, "entryScript": "score.py"}},
        "spec.model.uri": {"model": {"uri": uri}},
        "spec.sideInputs[0].uri": {"sideInputs": [{"name": "labels", "uri": uri}]},
    }
    return job(**fields[field], **spec)


OPERATOR_FIELDS = ["spec.input.uri", "spec.input.manifest", "spec.output.uri"]
POD_FIELDS = ["spec.code.uri", "spec.model.uri", "spec.sideInputs[0].uri"]


def problems(errors: list[str], field: str) -> list[str]:
    return [e for e in errors if e.startswith(field + ": ")]


@pytest.mark.parametrize("kind", LOCAL)
@pytest.mark.parametrize("field", OPERATOR_FIELDS)
def test_job_fields_the_operator_reads_refuse_local_storage(field, kind):
    (error,) = problems(job_cluster_errors(job_with(field, LOCAL[kind]), "img:1"), field)
    assert f"'{LOCAL[kind]}" in error and "az://" in error
    assert job_cluster_errors(job_with(field, SHARED), "img:1") == []


@pytest.mark.parametrize("field", OPERATOR_FIELDS + POD_FIELDS)
def test_memory_is_refused_even_with_local_storage(field):
    (error,) = problems(job_cluster_errors(job_with(field, LOCAL["memory://"]), "img:1", local_storage=True), field)
    assert "shared with no pod" in error


@pytest.mark.parametrize("kind", ["a path", "file://"])
@pytest.mark.parametrize("field", OPERATOR_FIELDS)
def test_local_storage_admits_paths_the_operator_and_pods_share(field, kind):
    assert job_cluster_errors(job_with(field, LOCAL[kind]), "img:1", local_storage=True) == []


@pytest.mark.parametrize("kind", ["a path", "file://"])
@pytest.mark.parametrize("field", POD_FIELDS)
def test_fields_only_the_pods_read_may_be_paths_in_the_image_unless_the_operator_fingerprints_them(field, kind):
    assert job_cluster_errors(job_with(field, LOCAL[kind]), "img:1") == []
    (error,) = problems(job_cluster_errors(job_with(field, LOCAL[kind], allowReuse=True), "img:1"), field)
    assert "operator's own filesystem" in error and "allowReuse" in error


def pipeline(workdir: str = "az://work/", component: str = "az://components/c.yaml", where: str = "steps"):
    steps = [{"name": "a", "container": {"image": "i:1", "command": ["true"]}}]
    doc = {"workdir": workdir, "steps": steps}
    doc[where] = [*(doc.get(where) or []), {"name": "c", "component": {"uri": component}}]
    return load_pipeline(doc)


@pytest.mark.parametrize("kind", LOCAL)
def test_pipeline_workdir_and_component_uris_refuse_local_storage(kind):
    uri = LOCAL[kind]
    assert [e.split(":")[0] for e in pipeline_cluster_errors(pipeline(workdir=uri), "img:1")] == ["spec.workdir"]
    for where in ("steps", "finally"):
        errors = pipeline_cluster_errors(pipeline(component=uri + "c.yaml", where=where), "img:1")
        index = 1 if where == "steps" else 0
        assert [e.split(": ")[0] for e in errors] == [f"spec.{where}[{index}].component.uri"]
        assert "component.configMap" in errors[0]
    assert pipeline_cluster_errors(pipeline(), "img:1") == []
    admitted = [] if kind != "memory://" else ["spec.workdir"]
    assert [e.split(":")[0] for e in pipeline_cluster_errors(pipeline(workdir=uri), "img:1", True)] == admitted


def schedule(trigger_uri: str | None = None, workdir: str = "az://work/"):
    spec = {"template": {"spec": {"workdir": workdir, "steps": [
        {"name": "a", "container": {"image": "i:1", "command": ["true"]}}]}}}
    if trigger_uri:
        spec["trigger"] = {"dataArrival": {"uri": trigger_uri}}
    else:
        spec["schedule"] = {"cron": "0 2 * * *"}
    return load_schedule({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineSchedule",
                          "metadata": {"name": "s"}, "spec": spec})


@pytest.mark.parametrize("kind", LOCAL)
@pytest.mark.parametrize("field", ["spec.trigger.dataArrival.uri", "spec.template.spec.workdir"])
def test_schedule_fields_refuse_local_storage(field, kind):
    uri = LOCAL[kind]
    spec = schedule(trigger_uri=uri) if field.startswith("spec.trigger") else schedule(workdir=uri)
    with pytest.raises(ScheduleSpecError) as refused:
        cluster_checked(spec, local_storage=False)
    assert [e.split(":")[0] for e in refused.value.errors] == [field]
    assert cluster_checked(schedule(trigger_uri=SHARED), local_storage=False).trigger.uri == SHARED
    if kind != "memory://":
        assert cluster_checked(spec, local_storage=True) is spec

