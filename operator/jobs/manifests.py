"""The children of a BatchInferenceJob as plain dicts: pure functions, no API calls.

Every child carries the labels that tie it to its resource and an owner reference,
so `kubectl delete bij/x` deletes them all. Names are deterministic, so an operator
that restarts finds what it made instead of making it twice.

    <name>-spec    ConfigMap  the normalized spec, mounted at /etc/parallelrun/job.json
    <name>-score   Job        Indexed, one pod per node, pod i scores shard i of the plan
    <name>-merge   Job        one pod: the output file, summary.json and errors.jsonl
"""

from __future__ import annotations

import json

from parallelrun.runner.api import (
    ANNOTATION_RUN_ID,
    ANNOTATION_SPEC_HASH,
    BATCH_INFERENCE_JOB,
    LABEL_COMPONENT,
    LABEL_JOB,
    LABEL_JOB_UID,
    LABEL_KUEUE_QUEUE,
)
from parallelrun.runner.contract import CODE_DIR, CODE_DIR_ENV, EXIT_CONFIG, EXIT_THRESHOLD, OPENAI_API_KEY_ENV
from parallelrun.runner.spec import API_VERSION, KIND, JobSpec

from ..kit.children import Owner
from ..kit.pods import (
    DISRUPTION_RULE,
    SCRATCH_DIR,
    SPEC_DIR,
    exit_rule,
    restricted_container,
    restricted_pod,
    scratch_env,
    with_user_env,
)
from ..kit.shared_storage import uri_problem

SCORING, MERGE, SPEC = "scoring", "merge", "spec"
SPEC_FILE = "job.json"
MERGE_BACKOFF_LIMIT = 2


def owner_of(body) -> Owner:
    return Owner.of(BATCH_INFERENCE_JOB, body)


def run_id(owner: Owner) -> str:
    """The run's id, and its work directory <output.uri>/_parallelrun/<run-id>/.

    `<name>-<first 8 characters of the uid>`: the same for the life of the resource
    (an operator restart resumes the same run), new for a re-created resource.
    """
    return f"{owner.name[:200]}-{owner.uid[:8]}"


def labels(owner: Owner, component: str) -> dict:
    return owner.labels(component, LABEL_JOB, LABEL_JOB_UID)


def metadata(owner: Owner, suffix: str, component: str, spec: JobSpec, run: str | None = None) -> dict:
    return owner.metadata(owner.child_name(suffix), labels(owner, component),
                          {ANNOTATION_RUN_ID: run or run_id(owner), ANNOTATION_SPEC_HASH: spec_hash(spec)})


def queued(job: dict, spec: JobSpec) -> dict:
    """`job` in spec.queueName's Kueue LocalQueue: labelled, and created suspended for Kueue to
    admit (the operator never unsuspends it); as it is without a queue."""
    if spec.queue_name:
        job["metadata"]["labels"][LABEL_KUEUE_QUEUE] = spec.queue_name
        job["spec"]["suspend"] = True
    return job


def spec_hash(spec: JobSpec) -> str:
    """The spec-hash annotation of a run's children: the spec's fingerprint, shortened."""
    return spec.fingerprint()[:16]


def resource_document(spec: JobSpec, owner: Owner) -> dict:
    """What the pods read from /etc/parallelrun/job.json."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": owner.name, "namespace": owner.namespace},
            "spec": spec.to_dict()}


def cluster_errors(spec: JobSpec, default_image: str | None, local_storage: bool = False) -> list[str]:
    """What a spec that is fine for local mode still lacks to run as pods (shared_storage.py for its URIs)."""
    errors = []
    if not spec.environment.get("image") and not default_image:
        errors.append("spec.environment.image: required to run on Kubernetes; give the scoring image "
                      "(e.g. registry/scorer:1.0) that has parallelrun installed")
    # The operator plans from the input and writes under the output; with allowReuse it also
    # fingerprints the code and checks the model and side inputs for changes.
    own = {"spec.input.uri": spec.input.uri, "spec.input.manifest": spec.input.manifest,
           "spec.output.uri": spec.output.uri}
    pods = {"spec.code.uri": spec.code.uri, "spec.model.uri": spec.model_uri,
            **{f"spec.sideInputs[{i}].uri": s.uri for i, s in enumerate(spec.side_inputs)}}
    reuse = "; with allowReuse the operator reads it too" if spec.allow_reuse else ""
    for fields, operator_reads, why in ((own, True, ""), (pods, spec.allow_reuse, reuse)):
        for field, uri in fields.items():
            problem = uri_problem(field, uri, operator_reads=operator_reads, local_storage=local_storage)
            if problem:
                errors.append(problem + why)
    return errors


# -- ConfigMap -------------------------------------------------------------------


def build_spec_configmap(spec: JobSpec, owner: Owner) -> dict:
    """The normalized spec the pods read; immutable, so a run cannot drift."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, SPEC, SPEC, spec),
        "immutable": True,
        "data": {SPEC_FILE: json.dumps(resource_document(spec, owner), indent=1, sort_keys=True)},
    }


# -- Jobs ------------------------------------------------------------------------


def runner_command(mode: str, run_id: str) -> list[str]:
    return ["python", "-m", "parallelrun.runner", mode, "--spec", f"{SPEC_DIR}/{SPEC_FILE}", "--run-id", run_id]


def build_scoring_job(spec: JobSpec, owner: Owner, default_image: str | None = None,
                      nodes: int | None = None, run: str | None = None) -> dict:
    """One Indexed Job: pod i runs shard i with processCountPerNode workers, one pod per node.

    `nodes`: the shards that have work (fewer than nodeCount when the plan has fewer
    mini-batches), so no node, or GPU, is taken for an empty shard. `run`: the run it
    scores, the resource's own (run_id) unless it repairs an earlier one.
    """
    run = run or run_id(owner)
    template = _pod_template(spec, owner, SCORING, runner_command("score", run), default_image, run, gpu=True)
    template["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {LABEL_JOB_UID: owner.uid, LABEL_COMPONENT: SCORING}},
        "topologyKey": "kubernetes.io/hostname",
    }]}}
    return queued({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, "score", SCORING, spec, run),
        "spec": {
            "completionMode": "Indexed",
            "completions": nodes or spec.node_count,
            "parallelism": nodes or spec.node_count,
            # runMaxTry attempts per mini-batch: a pod that crashes on a mini-batch is one attempt.
            "backoffLimitPerIndex": max(spec.run_max_try - 1, 0),
            # An index that cannot finish dooms the merge: stop the others at once.
            "maxFailedIndexes": 0,
            "podFailurePolicy": {"rules": [
                exit_rule("FailJob", [EXIT_THRESHOLD]),
                exit_rule("FailIndex", [EXIT_CONFIG]),
                DISRUPTION_RULE,
            ]},
            "template": template,
        },
    }, spec)


def build_merge_job(spec: JobSpec, owner: Owner, default_image: str | None = None, run: str | None = None) -> dict:
    """One pod that writes the output in plan order (same image, no GPU)."""
    run = run or run_id(owner)
    return queued({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, "merge", MERGE, spec, run),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": MERGE_BACKOFF_LIMIT,
            "podFailurePolicy": {"rules": [exit_rule("FailJob", [EXIT_CONFIG, EXIT_THRESHOLD]), DISRUPTION_RULE]},
            "template": _pod_template(spec, owner, MERGE, runner_command("merge", run), default_image, run,
                                      gpu=False),
        },
    }, spec)


def _pod_template(spec: JobSpec, owner: Owner, component: str, command: list[str],
                  default_image: str | None, run: str, gpu: bool) -> dict:
    """A scoring (`gpu`) or merge pod: the runner's container, its volumes, where it may run."""
    volumes, mounts = _volumes(spec, owner)
    pod = restricted_pod(_container(spec, command, mounts, default_image, gpu), volumes,
                         spec.environment.get("serviceAccountName"))
    pod.update(_placement(spec, spec.gpu if gpu else None))
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    return {"metadata": {"labels": labels(owner, component), "annotations": {ANNOTATION_RUN_ID: run}},
            "spec": pod}


def _volumes(spec: JobSpec, owner: Owner) -> tuple[list[dict], list[dict]]:
    """The pod's volumes and the container's mounts: the spec, scratch space, the code's ConfigMap."""
    volumes: list[dict] = [
        {"name": "spec", "configMap": {"name": owner.child_name(SPEC)}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts: list[dict] = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
    ]
    if spec.code.config_map:
        volumes.append({"name": "code", "configMap": {"name": spec.code.config_map}})
        mounts.append({"name": "code", "mountPath": CODE_DIR, "readOnly": True})
    return volumes, mounts


def _container(spec: JobSpec, command: list[str], mounts: list[dict], default_image: str | None,
               gpu: bool) -> dict:
    env_spec = spec.environment
    container = restricted_container(env_spec.get("image") or default_image, command, _env(spec, scoring=gpu), mounts,
                                     list(env_spec.get("envFrom") or []), spec.storage)
    resources = _resources(env_spec.get("resources") or {}, spec.gpu if gpu else None, keep_gpus=gpu)
    if resources:
        container["resources"] = resources
    return container


def _env(spec: JobSpec, scoring: bool) -> list[dict]:
    """The runner's variables (where to write, where the code is, a scoring pod's OpenAI key
    from its Secret), then the user's, which win."""
    env = scratch_env()
    if spec.code.config_map:
        env.append({"name": CODE_DIR_ENV, "value": CODE_DIR})
    secret = spec.code.openai.api_key_secret if spec.code.openai else None
    if scoring and secret:
        env.append({"name": OPENAI_API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": secret[0], "key": secret[1]}}})
    return with_user_env(env, spec.environment.get("env"))


def _placement(spec: JobSpec, gpu_spec) -> dict:
    """The pod's nodeSelector and tolerations: the user's, plus the GPU's product and taint."""
    node_selector = dict(spec.environment.get("nodeSelector") or {})
    tolerations = list(spec.environment.get("tolerations") or [])
    if gpu_spec:
        if gpu_spec.product:
            node_selector["nvidia.com/gpu.product"] = gpu_spec.product
        tolerations.append({"key": gpu_spec.resource_name, "operator": "Exists", "effect": "NoSchedule"})
    placement: dict[str, dict | list] = {}
    if node_selector:
        placement["nodeSelector"] = node_selector
    if tolerations:
        placement["tolerations"] = tolerations
    return placement


def _resources(resources: dict, gpu, keep_gpus: bool) -> dict:
    """The user's requests and limits; the GPU count is a limit (extended resources need one)."""
    out = {key: dict(value) for key, value in resources.items() if isinstance(value, dict)}
    if not keep_gpus:  # the merge pod: same memory and CPU, no GPU
        for section in out.values():
            for name in [n for n in section if "gpu" in n]:
                del section[name]
    if gpu is not None:
        out.setdefault("limits", {})[gpu.resource_name] = gpu.count
    return {key: value for key, value in out.items() if value}
