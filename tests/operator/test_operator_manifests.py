"""The pure manifest builders, without any server."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version
from operator_harness import ROOT

from parallelrun.operator.jobs.manifests import (
    build_merge_job,
    build_scoring_job,
    build_spec_configmap,
    cluster_errors,
    run_id,
    spec_hash,
)
from parallelrun.operator.kit.children import Owner, child_name, label_value
from parallelrun.operator.kit.pods import CONTAINER_SECURITY_CONTEXT
from parallelrun.runner.api import BATCH_INFERENCE_JOB
from parallelrun.runner.api import LABEL_JOB_UID as LABEL_UID
from parallelrun.runner.spec import load_spec, load_spec_file

OWNER = Owner(BATCH_INFERENCE_JOB, "iris", "team-a", "0123456789abcdef-uid")


def spec(**fields):
    base = {"input": {"uri": "az://data/iris/", "type": "tabular", "format": "parquet"},
            "code": {"entryScript": "score.py"}, "output": {"uri": "az://out/iris/"},
            "nodeCount": 4, "environment": {"image": "registry/scorer:1.0"}}
    base.update(fields)
    return load_spec({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                      "metadata": {"name": "iris", "namespace": "team-a"}, "spec": base})


def pod_spec(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def container(job: dict) -> dict:
    return pod_spec(job)["containers"][0]


def test_scoring_job_is_indexed_one_pod_per_node():
    job = build_scoring_job(spec(runMaxTry=3), OWNER)
    assert job["metadata"]["name"] == "iris-score" and job["metadata"]["namespace"] == "team-a"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert job["spec"]["backoffLimitPerIndex"] == 2 and job["spec"]["maxFailedIndexes"] == 0
    assert pod_spec(job)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [{
        "labelSelector": {"matchLabels": {LABEL_UID: OWNER.uid, "app.kubernetes.io/component": "scoring"}},
        "topologyKey": "kubernetes.io/hostname"}]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert container(job)["command"] == ["python", "-m", "parallelrun.runner", "score", "--spec",
                                         "/etc/parallelrun/job.json", "--run-id", "iris-01234567"]


def test_no_pod_for_a_shard_without_work():
    job = build_scoring_job(spec(nodeCount=4), OWNER, nodes=2)
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2


def test_pod_failure_policy_follows_the_runner_exit_codes():
    rules = build_scoring_job(spec(), OWNER)["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "runner", "operator": "In", "values": [3]}}
    assert rules[1] == {"action": "FailIndex", "onExitCodes": {"containerName": "runner", "operator": "In", "values": [2]}}
    assert rules[2] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def test_restricted_security_context_with_scratch():
    job = build_scoring_job(spec(), OWNER)
    pod = pod_spec(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(job)["securityContext"] == CONTAINER_SECURITY_CONTEXT
    assert CONTAINER_SECURITY_CONTEXT["readOnlyRootFilesystem"] is True
    assert CONTAINER_SECURITY_CONTEXT["allowPrivilegeEscalation"] is False
    assert CONTAINER_SECURITY_CONTEXT["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "scratch", "emptyDir": {}} in pod["volumes"]
    env = {e["name"]: e["value"] for e in container(job)["env"]}
    assert env["PARALLELRUN_SCRATCH"] == env["TMPDIR"] == env["HOME"] == "/scratch"
    assert pod["automountServiceAccountToken"] is False
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_environment_maps_onto_the_pod():
    environment = {"image": "registry/scorer:2", "env": [{"name": "TMPDIR", "value": "/data/tmp"}, {"name": "A", "value": "1"}],
                   "envFrom": [{"configMapRef": {"name": "settings"}}],
                   "resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
                   "nodeSelector": {"pool": "scoring"}, "tolerations": [{"key": "spot", "operator": "Exists"}],
                   "serviceAccountName": "scorer"}
    job = build_scoring_job(spec(environment=environment, storage={"secretRef": {"name": "blob"}}), OWNER)
    pod, c = pod_spec(job), container(job)
    assert c["image"] == "registry/scorer:2"
    assert [e for e in c["env"] if e["name"] == "TMPDIR"] == [{"name": "TMPDIR", "value": "/data/tmp"}]
    assert {"name": "A", "value": "1"} in c["env"]
    assert c["envFrom"] == [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "blob"}}]
    assert c["resources"] == environment["resources"]
    assert pod["nodeSelector"] == {"pool": "scoring"} and pod["tolerations"] == environment["tolerations"]
    assert pod["serviceAccountName"] == "scorer" and "automountServiceAccountToken" not in pod


def test_gpu_becomes_limit_node_selector_and_toleration():
    gpu = {"count": 2, "resourceName": "nvidia.com/gpu", "product": "NVIDIA-A100-SXM4-80GB"}
    s = spec(environment={"image": "i", "gpu": gpu, "resources": {"limits": {"memory": "64Gi"}}})
    scoring, merge = build_scoring_job(s, OWNER), build_merge_job(s, OWNER)
    assert container(scoring)["resources"] == {"limits": {"memory": "64Gi", "nvidia.com/gpu": 2}}
    assert pod_spec(scoring)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod_spec(scoring)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container(merge)["resources"] == {"limits": {"memory": "64Gi"}}  # the merge needs no GPU
    assert "nodeSelector" not in pod_spec(merge) and "tolerations" not in pod_spec(merge)


def test_merge_job_runs_the_runner_in_merge_mode():
    job = build_merge_job(spec(), OWNER)
    assert job["metadata"]["name"] == "iris-merge"
    assert job["spec"]["completions"] == 1 and job["spec"]["backoffLimit"] == 2
    assert container(job)["command"][3] == "merge" and "affinity" not in pod_spec(job)
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3]


def test_code_config_map_is_mounted():
    job = build_scoring_job(spec(code={"entryScript": "score.py", "configMap": "iris-code"}), OWNER)
    assert {"name": "code", "configMap": {"name": "iris-code"}} in pod_spec(job)["volumes"]
    assert {"name": "PARALLELRUN_CODE_DIR", "value": "/var/run/parallelrun/code"} in container(job)["env"]


def test_children_are_labelled_and_owned():
    s = spec()
    for child in (build_spec_configmap(s, OWNER), build_scoring_job(s, OWNER), build_merge_job(s, OWNER)):
        meta = child["metadata"]
        assert meta["labels"][LABEL_UID] == OWNER.uid
        assert meta["labels"]["parallelrun.dev/batchinferencejob"] == "iris"
        assert meta["ownerReferences"] == [{"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                                            "name": "iris", "uid": OWNER.uid, "controller": True,
                                            "blockOwnerDeletion": True}]
        assert meta["annotations"]["parallelrun.dev/spec-hash"] == spec_hash(s)
    pod_labels = build_scoring_job(s, OWNER)["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[LABEL_UID] == OWNER.uid and pod_labels["app.kubernetes.io/component"] == "scoring"


def test_configmap_holds_the_normalized_spec():
    s = spec(miniBatchSize="2MB")
    configmap = build_spec_configmap(s, OWNER)
    assert configmap["immutable"] is True and configmap["metadata"]["name"] == "iris-spec"
    document = json.loads(configmap["data"]["job.json"])
    assert document["metadata"] == {"name": "iris", "namespace": "team-a"}
    assert load_spec(document).to_dict() == s.to_dict()


def test_long_names_stay_within_limits():
    name = "a" * 80
    assert len(child_name(name, "score")) <= 52 and child_name(name, "score").endswith("-score")
    assert child_name(name, "score") != child_name(name[:-1] + "b", "score")
    assert len(label_value(name)) <= 63
    assert run_id(Owner(BATCH_INFERENCE_JOB, name, "ns", "uid-12345678")) == name + "-uid-1234"


@pytest.mark.parametrize("fields, problem", [
    ({"environment": {}}, "spec.environment.image: required"),
    ({"output": {"uri": "out/"}}, "spec.output.uri: 'out/' is a relative path"),
    ({"model": {"uri": "model/"}}, "spec.model.uri: 'model/' is a relative path"),
])
def test_cluster_errors(fields, problem):
    assert any(e.startswith(problem) for e in cluster_errors(spec(**fields), None))
    assert cluster_errors(spec(), None) == [] and cluster_errors(spec(environment={}), "default:1") == []


def test_default_image_when_the_spec_has_none():
    assert container(build_scoring_job(spec(environment={}), OWNER, "registry/default:1"))["image"] == "registry/default:1"


@pytest.mark.parametrize("version", ["1.29.0", latest_version()])  # backoffLimitPerIndex: 1.29 and later
def test_children_pass_the_kubernetes_schemas(version):
    full = spec(environment={"image": "r/s:1", "gpu": {"count": 2, "product": "NVIDIA-A100-SXM4-80GB"},
                             "env": [{"name": "A", "value": "1"}], "resources": {"requests": {"memory": "8Gi"}},
                             "nodeSelector": {"pool": "gpu"}, "serviceAccountName": "scorer"},
                code={"configMap": "iris-code", "entryScript": "score.py"}, storage={"secretRef": {"name": "creds"}})
    for child in (build_spec_configmap(full, OWNER), build_scoring_job(full, OWNER), build_merge_job(full, OWNER)):
        try:
            kubernetes_validate.validate(child, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{child['kind']} {child['metadata']['name']}: {'.'.join(map(str, error.path))}: "
                        f"{error.message}")


def test_the_cluster_example_needs_nothing_more():
    example = load_spec_file(ROOT / "examples" / "iris" / "job-azure.yaml")
    assert cluster_errors(example, default_image=None) == []
    job = build_scoring_job(example, OWNER)
    assert job["spec"]["completions"] == 2 and container(job)["envFrom"] == [{"secretRef": {"name": "blob-creds"}}]
    assert {"name": "code", "configMap": {"name": "iris-code"}} in pod_spec(job)["volumes"]


OPENAI_INPUT = {"uri": "az://data/batch/", "type": "tabular", "format": "jsonl"}


def openai_code(api_key: dict) -> dict:
    return {"builtin": "openai", "openai": {"endpoint": "https://aoai.example/openai/v1", "apiKey": api_key,
                                            "requestsPerMinute": 600}}


def test_the_openai_key_comes_from_its_secret_into_the_scoring_pod_alone():
    full = spec(input=OPENAI_INPUT, code=openai_code({"secretKeyRef": {"name": "aoai", "key": "api-key"}}))
    from_secret = {"name": "PARALLELRUN_OPENAI_API_KEY",
                   "valueFrom": {"secretKeyRef": {"name": "aoai", "key": "api-key"}}}
    scoring, merge = build_scoring_job(full, OWNER), build_merge_job(full, OWNER)
    assert from_secret in container(scoring)["env"]
    assert all(e["name"] != "PARALLELRUN_OPENAI_API_KEY" for e in container(merge)["env"])  # the merge sends nothing
    configmap = build_spec_configmap(full, OWNER)
    assert json.loads(configmap["data"]["job.json"])["spec"]["code"]["openai"]["apiKey"] == {
        "secretKeyRef": {"name": "aoai", "key": "api-key"}}  # the Secret's name, never the key
    for child in (configmap, scoring, merge):
        kubernetes_validate.validate(child, latest_version(), strict=True)


def test_an_openai_key_from_a_variable_is_the_users_to_set():
    full = spec(input=OPENAI_INPUT, code=openai_code({"env": "OPENAI_API_KEY"}),
                environment={"image": "r/s:1", "envFrom": [{"secretRef": {"name": "openai"}}]})
    c = container(build_scoring_job(full, OWNER))
    assert all(e["name"] != "PARALLELRUN_OPENAI_API_KEY" for e in c["env"])
    assert c["envFrom"] == [{"secretRef": {"name": "openai"}}]
