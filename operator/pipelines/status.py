"""The status of a PipelineRun, and what its children say: pure functions.

    status.steps.<step>   {phase, reused, child, startTime, completionTime, outputs, message,
                          progress, failedItems (a batchInference step's, from its BatchInferenceJob)}
                          phase Pending | Running | Succeeded | Failed | Skipped; a reused
                          step is Succeeded with reused: true and no child
    phase, conditions     every kind's (kit.conditions.with_phase): Running, Succeeded,
                          Failed (reason StepFailed or InvalidSpec), Reconciling, Stalled
    stepsDone/stepsTotal, progressText, currentStep    for `kubectl get prun`

A child (a step's Job or BatchInferenceJob) is read into a `ChildState` (kept in kopf's
indexes), with the fingerprint and outputs its step had when it was made.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from parallelrun.runner.accounting import Counts, progress_text
from parallelrun.runner.api import ANNOTATION_FINGERPRINT, ANNOTATION_OUTPUTS, LABEL_KUEUE_QUEUE, LABEL_STEP
from parallelrun.runner.pipelines import dag
from parallelrun.runner.pipelines.expressions import as_text

from ..kit.conditions import QUEUED, now, with_phase
from ..kit.observe import PodState, job_state, pod_state

OVER = (dag.SUCCEEDED, dag.FAILED, dag.SKIPPED)  # a step's phases that never change again


@dataclass(frozen=True)
class ChildState:
    """What the operator needs of one step's child."""

    step: str
    name: str
    phase: str  # Running | Succeeded | Failed
    message: str = ""
    fingerprint: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    has_pods: bool = False  # a Job, whose pods the run's index holds (say why it failed)
    progress: str = ""  # a BatchInferenceJob's mini-batches done of planned, and its failed items
    failed_items: int | None = None


def _child(body: Mapping, phase: str, message: str) -> ChildState:
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    try:
        outputs = json.loads(annotations.get(ANNOTATION_OUTPUTS) or "{}")
    except ValueError:
        outputs = {}
    return ChildState(step=(meta.get("labels") or {}).get(LABEL_STEP, ""), name=meta.get("name", ""), phase=phase,
                      message=message, fingerprint=annotations.get(ANNOTATION_FINGERPRINT),
                      outputs=outputs if isinstance(outputs, dict) else {})


def job_child(job: Mapping) -> ChildState:
    """A container or component step's Job: Running until its Complete or Failed condition."""
    state = job_state(job)
    if state.finished == "Complete":
        return _child(job, dag.SUCCEEDED, "")
    if state.finished == "Failed":
        why = ": ".join(filter(None, (state.reason, state.message)))
        failed = _child(job, dag.FAILED, f"Job {state.name} failed" + (f" ({why})" if why else ""))
        return dataclasses.replace(failed, has_pods=True)
    if state.suspended:  # in a Kueue queue, not yet admitted
        queue = (job.get("metadata", {}).get("labels") or {}).get(LABEL_KUEUE_QUEUE)
        return _child(job, dag.RUNNING, f"Job {state.name} waits for Kueue to admit it (LocalQueue {queue})")
    return _child(job, dag.RUNNING, "")


def step_pod(pod: Mapping) -> tuple[str, PodState]:
    """A step Job's pod: its step, and what it says (its exit code and termination message)."""
    return (pod.get("metadata", {}).get("labels") or {}).get(LABEL_STEP, ""), pod_state(pod)


def failed_pod(pods: Iterable[tuple[str, PodState]], step: str) -> PodState | None:
    """The step's latest pod that failed, whose exit code and message say why its Job failed."""
    failed = [pod for name, pod in pods if name == step and pod.phase == "Failed"]
    return max(failed, key=lambda pod: pod.order) if failed else None


def batch_job_child(resource: Mapping) -> ChildState:
    """A batchInference step's BatchInferenceJob: Running until its phase is Succeeded or Failed;
    its progress and failed items as its status reports them."""
    status = resource.get("status") or {}
    phase = status.get("phase")
    if phase == dag.SUCCEEDED:
        child = _child(resource, dag.SUCCEEDED, "")
    elif phase == dag.FAILED:
        name = resource.get("metadata", {}).get("name", "")
        reason = next((c.get("reason") for c in status.get("conditions") or []
                       if c.get("type") == "Failed" and c.get("status") == "True"), None)
        child = _child(resource, dag.FAILED, f"BatchInferenceJob {name} failed"
                       + (f" ({reason})" if reason else "")
                       + (f": {status['message']}" if status.get("message") else ""))
    else:
        child = _child(resource, dag.RUNNING, status.get("message", "") if phase == QUEUED else "")
    counts = Counts.from_dict(status.get("progress") or {})
    total = ((status.get("progress") or {}).get("miniBatches") or {}).get("total")
    if total is None:
        return child
    return dataclasses.replace(child, progress=progress_text(counts.mini_batches, total, counts.items_failed),
                               failed_items=counts.items_failed)


def step_states(steps: Mapping[str, Mapping]) -> dict[str, str]:
    """status.steps as the DAG engine's states (a reused step is dag.REUSED)."""
    return {name: dag.REUSED if s.get("reused") and s.get("phase") == dag.SUCCEEDED else s.get("phase", dag.PENDING)
            for name, s in steps.items()}


def skip_message(graph: dag.Graph, states: Mapping[str, str], name: str) -> str:
    """Why `name` is Skipped: the steps it needs that failed or were skipped."""
    bad = [need for need in graph.needs.get(name, ()) if states.get(need) in dag.BAD]
    return f"skipped: it needs {', '.join(bad)}, which did not succeed"


def with_steps(status: dict, graph: dag.Graph, steps: Mapping[str, Mapping], parameters: Mapping,
               generation: int | None, at: str | None = None) -> dict:
    """`status` with `steps` and everything derived from them: phase, conditions, counts, message."""
    steps = {name: dict(steps[name]) for name in graph.names if name in steps}  # in spec order
    states = step_states(steps)
    phase = dag.phase(graph, states)
    done = sum(1 for name in graph.names if states.get(name) in dag.OVER)
    running = [name for name in graph.names if states.get(name) == dag.RUNNING]
    new = dict(status, steps=steps, parameters={k: as_text(v) for k, v in parameters.items()},
               stepsDone=done, stepsTotal=len(graph.names), progressText=f"{done}/{len(graph.names)}",
               currentStep=", ".join(running))
    if phase != dag.PENDING:
        new.setdefault("startTime", at or now())  # also for a run that ends at its first look (all reused)
    failed = [name for name in graph.names if states.get(name) == dag.FAILED]
    if phase == dag.FAILED:
        first = steps[failed[0]]
        message = f"step {failed[0]} failed: {first.get('message', '')}".rstrip(": ")
        if len(failed) > 1:
            message += f" (failed too: {', '.join(failed[1:])})"
        return with_phase(new, dag.FAILED, "StepFailed", message, generation, at)
    if phase == dag.SUCCEEDED:
        reused = sum(1 for name in graph.names if states.get(name) == dag.REUSED)
        message = f"{len(graph.names)} step(s) succeeded" + (f", {reused} reused" if reused else "")
        return with_phase(new, dag.SUCCEEDED, "Succeeded", message, generation, at)
    if phase == dag.PENDING:
        return with_phase(new, dag.PENDING, "Waiting", "waiting for the first step to start", generation, at)
    message = f"running {', '.join(running)}" if running else "starting the next steps"
    if failed:
        message += f"; failed: {', '.join(failed)}"
    return with_phase(new, dag.RUNNING, "StepsRunning", message, generation, at)
