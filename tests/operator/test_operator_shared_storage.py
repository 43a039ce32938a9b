"""On a cluster the operator never plans from, nor writes to, its own filesystem (shared_storage.py).

The operator runs as on a real cluster (no --local-storage): each kind with a local
path where the operator itself would read or write ends refused, naming the field,
with no child, no plan and no retry.
"""

from __future__ import annotations

import pytest
from operator_harness import BIJ_API, NAMESPACE, condition, create, eventually, resource, status_of, uid_of

from parallelrun.operator.kit.kube import path

pytestmark = pytest.mark.timeout(60)


async def test_a_job_over_the_operators_filesystem_fails_before_planning(cluster, kube, operator, tmp_path):
    output = tmp_path / "out"
    async with operator(local_storage=False) as memo:
        await create(kube, resource("etc", {"input": "/etc/", "output": f"file://{output}/"}))
        status = await eventually(lambda: status_of(cluster, "etc").get("phase") == "Failed" and status_of(cluster, "etc"))
        await eventually(lambda: memo.wakeups.finished[uid_of(cluster, "etc")])  # no retry loop: its controller is done
    failed = condition(status, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].splitlines()[0].startswith("spec.input.uri: '/etc/' is a path on the operator's own")
    assert failed["message"].splitlines()[1].startswith(f"spec.output.uri: 'file://{output}/' is a path")
    assert not output.exists(), "nothing is written into the operator's filesystem"
    assert not cluster.get("jobs", "etc-score") and not cluster.get("configmaps", "etc-spec")
    assert status_of(cluster, "etc") == status


async def test_a_pipeline_with_a_local_workdir_fails_before_any_step(cluster, kube, operator, tmp_path):
    body = {"apiVersion": BIJ_API, "kind": "PipelineRun", "metadata": {"name": "local", "namespace": NAMESPACE},
            "spec": {"workdir": str(tmp_path / "work"), "steps": [
                {"name": "a", "container": {"image": "busybox", "command": ["true"]}},
                {"name": "c", "component": {"uri": "memory://components/c.yaml"}}]}}
    async with operator(local_storage=False):
        await kube.create(path(BIJ_API, "pipelineruns", NAMESPACE), body)
        run = await eventually(lambda: (cluster.get("pipelineruns", "local") or {}).get("status", {}).get("phase")
                               == "Failed" and cluster.get("pipelineruns", "local")["status"])
    failed = condition(run, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert [line.split(":")[0] for line in failed["message"].splitlines()] == ["spec.workdir", "spec.steps[1].component.uri"]
    assert not cluster.get("jobs", "local-a") and not (tmp_path / "work").exists()


async def test_a_schedule_polling_the_operators_filesystem_is_invalid(cluster, kube, operator, tmp_path):
    body = {"apiVersion": BIJ_API, "kind": "PipelineSchedule", "metadata": {"name": "arrivals", "namespace": NAMESPACE},
            "spec": {"trigger": {"dataArrival": {"uri": str(tmp_path / "incoming")}},
                     "template": {"spec": {"workdir": "az://work/", "steps": [
                         {"name": "a", "container": {"image": "busybox", "command": ["true"]}}]}}}}
    async with operator(local_storage=False):
        await kube.create(path(BIJ_API, "pipelineschedules", NAMESPACE), body)
        status = await eventually(lambda: (cluster.get("pipelineschedules", "arrivals") or {}).get("status"))
    invalid = condition(status, "InvalidSchedule")
    assert invalid["status"] == "True"
    assert invalid["message"].startswith(f"spec.trigger.dataArrival.uri: '{tmp_path / 'incoming'}' is a path on")
