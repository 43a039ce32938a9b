"""The children of a PipelineRun as plain dicts: pure functions, no API calls.

Each step's child is named `<run>-<step>` (kit.children.child_name: deterministic,
shortened with a hash when too long), carries the labels that tie it to its run and step, and an
owner reference, so `kubectl delete prun/x` deletes them all:

    batchInference step, parallel component    BatchInferenceJob  the step's resolved spec
    container step                             Job                the user's image and command
    component step                             Job + ConfigMap    the component's image running
                                                                  `python -m parallelrun.runner step`
                                                                  on the resolved step (the ConfigMap)
    the run                                    ConfigMap          <run>-spec: the spec it started with

Job pods get the restricted security context, scratch volume and storage credentials
of every pod (kit.pods). What a child needs to be judged later (its step's fingerprint
and outputs) is in its annotations, so the run's state can be rebuilt from its children
after an operator restart.
"""

from __future__ import annotations

import json

from parallelrun.runner.api import (
    ANNOTATION_FINGERPRINT,
    ANNOTATION_OUTPUTS,
    API_VERSION,
    BATCH_INFERENCE_JOB,
    LABEL_KUEUE_QUEUE,
    LABEL_RUN,
    LABEL_RUN_UID,
    LABEL_STEP,
    PIPELINE_RUN,
)
from parallelrun.runner.contract import EXIT_CONFIG
from parallelrun.runner.pipelines.resolved import ResolvedStep
from parallelrun.runner.pipelines.spec import PipelineSpec

from ..kit.children import Owner, child_name
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

STEP_FILE, SPEC_FILE = "step.json", "pipeline.json"
STEP_COMMAND = ["python", "-m", "parallelrun.runner", "step", "--step", f"{SPEC_DIR}/{STEP_FILE}"]


def owner_of(body) -> Owner:
    return Owner.of(PIPELINE_RUN, body)


def step_labels(owner: Owner, step: str | None) -> dict:
    """The labels of a step's children (and their pods), or with no step the run's spec: the run, its uid, the step."""
    labels = owner.labels("step" if step else "spec", LABEL_RUN, LABEL_RUN_UID)
    if step:
        labels[LABEL_STEP] = step
    return labels


def step_metadata(owner: Owner, step: str | None, name: str | None = None, annotations: dict | None = None) -> dict:
    if not name:
        assert step is not None, "the run's own children are named"
        name = child_name(owner.name, step)
    return owner.metadata(name, step_labels(owner, step), annotations)


def cluster_errors(spec: PipelineSpec, default_image: str | None, local_storage: bool = False) -> list[str]:
    """What a pipeline that is fine for local mode still lacks to run on a cluster.

    The operator writes the reuse index under workdir and reads component files itself
    (shared_storage.py); each batchInference step is judged as the BatchInferenceJob it becomes."""
    errors = []
    if problem := uri_problem("spec.workdir", spec.workdir, operator_reads=True, local_storage=local_storage):
        errors.append(problem)
    for where, steps in (("spec.steps", spec.steps), ("spec.finally", spec.finally_steps)):
        for i, step in enumerate(steps):
            ref = step.component_ref
            if ref is not None and (problem := uri_problem(f"{where}[{i}].component.uri", ref.uri, operator_reads=True,
                                                           local_storage=local_storage)):
                errors.append(problem + ", or put the component in a ConfigMap (component.configMap)")
            image = (step.body or {}).get("image") if step.kind == "container" else (
                step.component.image if step.component is not None and step.component.type == "command" else "")
            if image is None and not default_image:
                field = "container.image" if step.kind == "container" else "component: its environment.image"
                errors.append(f"{where}[{i}].{field}: required on a cluster (the operator has no --job-image); "
                              "give the image to run")
    return errors


def spec_configmap_name(owner: Owner) -> str:
    return child_name(owner.name, "spec")


def build_spec_configmap(owner: Owner, document: dict) -> dict:
    """The run's spec as it started (immutable): a restart goes on with it, an edit is refused."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": step_metadata(owner, None, spec_configmap_name(owner)),
            "immutable": True, "data": {SPEC_FILE: json.dumps(document, indent=1, sort_keys=True)}}


def child_annotations(step: ResolvedStep) -> dict:
    """What the operator reads back from a child: its step's fingerprint (for the reuse index) and outputs."""
    return {ANNOTATION_FINGERPRINT: step.fingerprint, ANNOTATION_OUTPUTS: json.dumps(dict(step.outputs),
                                                                                     sort_keys=True)}


def build_step_batch_job(owner: Owner, step: ResolvedStep, pipeline: PipelineSpec) -> dict:
    """A BatchInferenceJob running a batchInference step's (or a parallel component's) normalized spec,
    in the run's Kueue queue and priority class unless the step names its own."""
    assert step.job is not None  # a batchInference step's
    job = dict(step.job)
    if pipeline.queue_name:
        job.setdefault("queueName", pipeline.queue_name)
    if pipeline.priority_class_name:
        job.setdefault("priorityClassName", pipeline.priority_class_name)
    return {"apiVersion": API_VERSION, "kind": BATCH_INFERENCE_JOB.kind,
            "metadata": step_metadata(owner, step.name, annotations=child_annotations(step)), "spec": job}


def build_container_job(owner: Owner, step: ResolvedStep, pipeline: PipelineSpec, default_image: str | None) -> dict:
    """A Job running a container step's image and command, retried `retries` times."""
    assert isinstance(step.command, list)  # a container step's: the argument list
    runner = restricted_container(step.image or default_image, list(step.command),
                                  with_user_env(scratch_env(), step.env), [_SCRATCH_MOUNT], [], step.storage)
    if step.resources:
        runner["resources"] = step.resources
    return _job(owner, step, pipeline, runner, [_SCRATCH_VOLUME], [DISRUPTION_RULE])


def step_configmap_name(owner: Owner, step: str) -> str:
    return f"{child_name(owner.name, step)}-step"


def build_step_configmap(owner: Owner, step: ResolvedStep) -> dict:
    """The resolved step a component step's pod runs, immutable like a BatchInferenceJob's spec."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": step_metadata(owner, step.name, name=step_configmap_name(owner, step.name)),
            "immutable": True, "data": {STEP_FILE: json.dumps(step.to_dict(), indent=1, sort_keys=True)}}


def build_component_job(owner: Owner, step: ResolvedStep, pipeline: PipelineSpec, default_image: str | None) -> dict:
    """A Job running the component's image on its resolved step (build_step_configmap), retried `retries` times."""
    volumes: list[dict] = [_SCRATCH_VOLUME, {"name": "step", "configMap": {"name": step_configmap_name(owner,
                                                                                                       step.name)}}]
    mounts: list[dict] = [_SCRATCH_MOUNT, {"name": "step", "mountPath": SPEC_DIR, "readOnly": True}]
    runner = restricted_container(step.image or default_image, STEP_COMMAND, scratch_env(), mounts, [], step.storage)
    # The step runner exits EXIT_CONFIG when the step cannot start or keep its outputs: not worth a retry.
    return _job(owner, step, pipeline, runner, volumes, [exit_rule("FailJob", [EXIT_CONFIG]), DISRUPTION_RULE])


def build_step_children(owner: Owner, step: ResolvedStep, pipeline: PipelineSpec,
                        default_image: str | None) -> list[dict]:
    """Every child of a step, in the order to create them (a Job's ConfigMap first)."""
    if step.kind == "batchInference":
        return [build_step_batch_job(owner, step, pipeline)]
    if step.kind == "container":
        return [build_container_job(owner, step, pipeline, default_image)]
    return [build_step_configmap(owner, step), build_component_job(owner, step, pipeline, default_image)]


_SCRATCH_VOLUME = {"name": "scratch", "emptyDir": {}}
_SCRATCH_MOUNT = {"name": "scratch", "mountPath": SCRATCH_DIR}


def _job(owner: Owner, step: ResolvedStep, pipeline: PipelineSpec, container: dict, volumes: list[dict],
         rules: list[dict]) -> dict:
    """One pod, retried `retries` times; `rules`: its podFailurePolicy (a drained node never counts).
    In the run's Kueue queue it is created suspended for Kueue to admit (the operator never unsuspends it)."""
    pod = restricted_pod(container, volumes)
    if pipeline.priority_class_name:
        pod["priorityClassName"] = pipeline.priority_class_name
    metadata = step_metadata(owner, step.name, annotations=child_annotations(step))
    if pipeline.queue_name:
        metadata["labels"][LABEL_KUEUE_QUEUE] = pipeline.queue_name
    spec: dict = {"completions": 1, "parallelism": 1, "backoffLimit": step.retries,
                  "podFailurePolicy": {"rules": rules},
                  "template": {"metadata": {"labels": step_labels(owner, step.name)}, "spec": pod}}
    if pipeline.queue_name:
        spec["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
