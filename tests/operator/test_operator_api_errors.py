"""The Kubernetes API refusing the operator's requests: what retrying cannot fix fails the run
with the reason (403, 422...); what may pass later (429, 5xx) is retried.

The emulator answers chosen requests of the operator with an error (Cluster.refuse).
"""

from __future__ import annotations

import logging

import pytest
from operator_harness import condition, create, eventually, report, resource, status_of, uid_of

from parallelrun.operator.kit.controller import Controller
from parallelrun.operator.kit.kube import ApiError, Call, path
from parallelrun.runner.api import BATCH_INFERENCE_JOB

PLURAL = BATCH_INFERENCE_JOB.plural

pytestmark = pytest.mark.timeout(60)

RBAC_FORBIDDEN = ('jobs.batch is forbidden: User "system:serviceaccount:parallelrun:parallelrun" cannot create '
                  'resource "jobs" in API group "batch" in the namespace "ns"')
INVALID_CAUSE = {"reason": "FieldValueInvalid", "field": "spec.template.spec.containers[0].resources.requests[cpu]",
                 "message": 'Invalid value: "-1": must be greater than or equal to 0'}


def events(cluster, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e.get("message", "")) for (res, _, _), obj in cluster.objects.items()
            if res.plural == "events" and not obj.deleted
            for e in [obj.raw] if e.get("involvedObject", {}).get("name") == name]


async def finished(cluster, name: str) -> dict:
    return await eventually(lambda: status_of(cluster, name).get("phase") in ("Succeeded", "Failed")
                            and status_of(cluster, name))


async def test_forbidden_job_create_fails_the_run_without_retrying(cluster, kube, operator, inputs, schema,
                                                                   monkeypatch):
    monkeypatch.setattr(Controller, "retry_seconds", 0.05)  # a retry loop, if there were one, would show
    refusal = cluster.refuse("create", "jobs", "forbid-score", status=403, reason="Forbidden", message=RBAC_FORBIDDEN)
    async with operator() as memo:
        await create(kube, resource("forbid", inputs))
        status = await finished(cluster, "forbid")
        await eventually(lambda: memo.wakeups.finished[uid_of(cluster, "forbid")])  # its controller is done
        assert refusal.hits == 1  # asked once, never again
    failed = condition(status, "Failed")
    assert status["phase"] == "Failed" and failed["reason"] == "Forbidden"
    assert failed["message"].startswith("the Kubernetes API refused to create Job forbid-score (403 Forbidden): "
                                        + RBAC_FORBIDDEN)
    assert "operator's RBAC" in failed["message"] and "'create' on jobs.batch in namespace ns" in failed["message"]
    assert "rbac.create" in failed["message"]
    assert condition(status, "Stalled") | {"status": "True", "reason": "Forbidden"} == condition(status, "Stalled")
    assert condition(status, "Running")["status"] == "False"
    assert any(e[:2] == ("Warning", "Forbidden") and "create Job forbid-score" in e[2]
               for e in events(cluster, "forbid"))
    assert not cluster.get("jobs", "forbid-score") and cluster.creations["jobs", "forbid-score"] == 0
    assert schema.validate(cluster.get(PLURAL, "forbid")) == []


async def test_invalid_merge_job_fails_with_the_rejected_fields(cluster, kube, kubelet, operator, inputs):
    cluster.refuse("create", "jobs", "bad-merge", status=422, reason="Invalid",
                   message='Job.batch "bad-merge" is invalid: ' + INVALID_CAUSE["field"],
                   details={"name": "bad-merge", "group": "batch", "kind": "Job", "causes": [INVALID_CAUSE]})
    async with operator():
        await create(kube, resource("bad", inputs))
        await eventually(lambda: status_of(cluster, "bad").get("phase") == "Running")
        await kubelet.run("bad-score", 0, 0, report(5))
        await kubelet.run("bad-score", 1, 0, report(5))
        status = await finished(cluster, "bad")
    failed = condition(status, "Failed")
    assert failed["reason"] == "Invalid" and status["phase"] == "Failed"
    assert "refused to create Job bad-merge (422 Invalid)" in failed["message"]
    assert failed["message"].endswith(f"Rejected: {INVALID_CAUSE['field']}: {INVALID_CAUSE['message']}")
    assert status["progress"]["miniBatches"] == {"total": 10, "succeeded": 10, "failed": 0}
    assert "mergeJobName" not in status


async def test_server_error_is_retried_and_the_run_succeeds(cluster, kube, kubelet, operator, inputs, monkeypatch):
    monkeypatch.setattr(Controller, "retry_seconds", 0.05)
    outage = cluster.refuse("create", "jobs", "flaky-score", status=500, reason="InternalError",
                            message="etcdserver: request timed out", times=1)
    async with operator():
        await create(kube, resource("flaky", inputs))
        await eventually(lambda: status_of(cluster, "flaky").get("phase") == "Running")
        assert outage.hits == 1 and cluster.creations["jobs", "flaky-score"] == 1
        await kubelet.run("flaky-score", 0, 0, report(5))
        await kubelet.run("flaky-score", 1, 0, report(5))
        await eventually(lambda: cluster.get("jobs", "flaky-merge"))
        await kubelet.run("flaky-merge", 0, 0, '{"status": "Succeeded"}')
        status = await finished(cluster, "flaky")
    assert status["phase"] == "Succeeded"
    assert not condition(status, "Failed")


async def test_too_many_requests_is_retried_after_retry_after(cluster, kube, operator, inputs):
    # RETRY_SECONDS stays 30: running within seconds means the server's Retry-After was obeyed.
    throttle = cluster.refuse("create", "configmaps", "busy-spec", status=429, reason="TooManyRequests",
                              message="Too many requests, please try again later.", retry_after=1, times=1)
    async with operator():
        await create(kube, resource("busy", inputs))
        await eventually(lambda: throttle.hits == 1)
        status = await eventually(lambda: status_of(cluster, "busy").get("phase") == "Running"
                                  and status_of(cluster, "busy"), timeout=8)
    assert status["jobName"] == "busy-score" and cluster.creations["configmaps", "busy-spec"] == 1


async def test_forbidden_status_write_is_logged_not_retried(cluster, kube, operator, inputs, monkeypatch, caplog):
    monkeypatch.setattr(Controller, "retry_seconds", 0.05)
    refusal = cluster.refuse("patch", f"{PLURAL}/status", "mute", status=403, reason="Forbidden",
                             message='batchinferencejobs.parallelrun.dev "mute" is forbidden')
    with caplog.at_level(logging.ERROR):
        async with operator() as memo:
            await create(kube, resource("mute", inputs))
            await eventually(lambda: refusal.hits == 2)  # Planning, then the Failed status saying why
            await eventually(lambda: memo.wakeups.finished[uid_of(cluster, "mute")])  # its controller is done
            assert refusal.hits == 2
    assert "its Failed status cannot be written" in caplog.text
    assert "refused to patch BatchInferenceJob mute (status) (403 Forbidden)" in caplog.text
    assert "'patch' on batchinferencejobs.parallelrun.dev/status" in caplog.text
    assert not cluster.get("jobs", "mute-score")


@pytest.mark.parametrize(("status", "call", "details", "permanent", "reason"), [
    (400, "create", None, True, "ApiRejected"),
    (403, "create", None, True, "Forbidden"),
    (413, "create", None, True, "ApiRejected"),
    (422, "create", None, True, "Invalid"),
    (404, "create", {"name": "ns", "kind": "namespaces"}, True, "ApiRejected"),  # the namespace is gone
    (404, "get", None, False, None),
    (409, "create", None, False, None),
    (409, "patch", None, False, None),  # a status write racing another
    (429, "create", None, False, None),
    (500, "create", None, False, None),
    (503, "patch", None, False, None),
    (0, "get", None, False, None),  # unreachable
])
def test_which_api_errors_are_permanent(status, call, details, permanent, reason):
    method = {"create": "POST", "get": "GET", "patch": "PATCH"}[call]
    body = {"kind": "Job", "metadata": {"name": "x-score"}}
    error = ApiError(status, "Whatever", "the API's message", Call.of(method, path("batch/v1", "jobs", "ns"), body),
                     details)
    assert error.permanent is permanent
    if permanent:
        assert error.failure_reason == reason
        assert error.explain().startswith(f"the Kubernetes API refused to {call} Job x-score ({status} Whatever): "
                                          "the API's message")


def test_retry_after_and_namespace_terminating():
    assert ApiError(429, "TooManyRequests", "slow down", retry_after=3).retry_delay(30) == 3
    assert ApiError(500, "InternalError", "oops").retry_delay(30) == 30
    terminating = ApiError(403, "Forbidden", 'unable to create new content in namespace ns because it is being '
                           'terminated', Call.of("POST", path("v1", "configmaps", "ns"), {"kind": "ConfigMap"}),
                           {"causes": [{"type": "NamespaceTerminating", "field": "metadata.namespace"}]})
    assert terminating.permanent and terminating.explain().endswith("Namespace ns is being deleted")
    assert "RBAC" not in terminating.explain()


async def test_a_storage_secret_the_chart_does_not_grant_names_the_rbac_values(cluster, kube, operator, inputs):
    """A cluster-wide install reads no Secret by default: the run fails naming the values that grant it."""
    cluster.refuse("get", "secrets", "blob-creds", status=403, reason="Forbidden", message=RBAC_FORBIDDEN)
    async with operator():
        await create(kube, resource("nosecret", inputs, storage={"secretRef": {"name": "blob-creds"}}))
        status = await finished(cluster, "nosecret")
    failed = condition(status, "Failed")
    assert failed["reason"] == "Forbidden"
    assert "'get' on secrets in namespace ns" in failed["message"]
    assert "rbac.secretNamespaces, or rbac.secretsInAllNamespaces" in failed["message"]
