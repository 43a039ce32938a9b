"""What the pods and Jobs of a run say: per-shard outcomes, summed counts, the verdict.

Counts come from the scoring pods' termination messages (the runner contract) and,
for a shard still running, from the progress file its pod publishes, so they can be
recomputed from scratch at any moment, after an operator restart too. Each shard
counts once: its succeeded pod, or else the furthest of its latest attempt that left
counts and its progress file. A retried pod resumes from what is committed and
reports the shard's whole count, so adding up attempts would count items twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from parallelrun.runner.accounting import Counts, spec_threshold_exceeded
from parallelrun.runner.contract import EXIT_CONFIG, EXIT_THRESHOLD
from parallelrun.runner.plan import shards_with_work
from parallelrun.runner.spec import JobSpec

from .manifests import COMPLETION_INDEX, CONTAINER, LABEL_COMPONENT, MERGE, SCORING

_MESSAGE_TAIL = 600  # characters of a pod's log tail quoted in a status message

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
ShardState = Literal["waiting", "active", "retrying", "succeeded", "failed"]


@dataclass(frozen=True)
class PodState:
    """What the operator needs of one pod (kept in kopf's index: small and immutable)."""

    name: str
    component: str
    index: int | None
    order: tuple  # later attempts of an index sort last
    phase: PodPhase
    exit_code: int | None = None
    reason: str | None = None  # the container's, e.g. OOMKilled, or the pod's, e.g. Evicted
    message: str | None = None  # the termination message: the runner's JSON, or a log tail

    @property
    def terminated(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def report(self) -> dict | None:
        """The runner's JSON termination message, if that is what the pod left."""
        try:
            report = json.loads(self.message or "")
        except ValueError:
            return None
        return report if isinstance(report, dict) else None

    @property
    def counts(self) -> Counts | None:
        report = self.report
        return Counts.from_dict(report) if report and ("miniBatches" in report or "items" in report) else None

    def describe(self) -> str:
        """Why this pod ended, for a status message."""
        report = self.report
        detail = (report or {}).get("reason") if report is not None else (self.message or "").strip()[-_MESSAGE_TAIL:]
        code = f"exit code {self.exit_code}" if self.exit_code is not None else "no exit code"
        head = f"pod {self.name} ended with {code}" + (f" ({self.reason})" if self.reason else "")
        return f"{head}: {detail}" if detail else head


def pod_state(pod: Mapping) -> PodState:
    meta, status = pod.get("metadata", {}), pod.get("status") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    raw_index = labels.get(COMPLETION_INDEX, annotations.get(COMPLETION_INDEX))
    failures = annotations.get("batch.kubernetes.io/job-index-failure-count", "0")
    terminated = {}
    for container in status.get("containerStatuses") or []:
        if container.get("name") == CONTAINER:
            terminated = (container.get("state") or {}).get("terminated") or {}
    return PodState(
        name=meta.get("name", ""),
        component=labels.get(LABEL_COMPONENT, ""),
        index=int(raw_index) if raw_index is not None and str(raw_index).isdigit() else None,
        order=(int(failures) if str(failures).isdigit() else 0, meta.get("creationTimestamp") or "", meta.get("name", "")),
        phase=status.get("phase") or "Pending",
        exit_code=terminated.get("exitCode"),
        reason=terminated.get("reason") or status.get("reason"),
        message=terminated.get("message") or status.get("message"),
    )


@dataclass(frozen=True)
class JobState:
    name: str
    component: str
    finished: Literal["Complete", "Failed"] | None = None  # while running: None
    reason: str = ""
    message: str = ""
    failed_indexes: frozenset[int] = frozenset()
    suspended: bool = False


def job_state(job: Mapping) -> JobState:
    meta, spec, status = job.get("metadata", {}), job.get("spec") or {}, job.get("status") or {}
    finished, reason, message = None, "", ""
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            finished, reason, message = condition["type"], condition.get("reason", ""), condition.get("message", "")
    return JobState(name=meta.get("name", ""), component=(meta.get("labels") or {}).get(LABEL_COMPONENT, ""),
                    finished=finished, reason=reason, message=message,
                    failed_indexes=frozenset(_parse_indexes(status.get("failedIndexes") or "")),
                    suspended=bool(spec.get("suspend")))


def _parse_indexes(text: str) -> Iterable[int]:
    """Kubernetes' compressed index lists: "1,3-5" → 1, 3, 4, 5."""
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        yield from range(int(first), int(last or first) + 1)


# -- scoring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One index of the scoring Job, judged from all its pods."""

    index: int
    state: ShardState
    counts: Counts | None  # the counts that stand for this shard (see the module's doc)
    last: PodState | None  # the latest attempt
    attempts: int


def shards(pods: Iterable[PodState], node_count: int, failed_indexes: frozenset[int] = frozenset(),
           live: Mapping[int, Counts] | None = None) -> list[Shard]:
    """Each index judged; `live` holds the progress files' counts of shards still running."""
    live = live or {}
    by_index: dict[int, list[PodState]] = {i: [] for i in range(node_count)}
    for pod in pods:
        if pod.index in by_index:
            by_index[pod.index].append(pod)
    result = []
    for index, attempts in by_index.items():
        attempts.sort(key=lambda p: p.order)
        succeeded = [p for p in attempts if p.phase == "Succeeded"]
        reported = [p for p in attempts if p.terminated and p.counts is not None]
        last = succeeded[-1] if succeeded else attempts[-1] if attempts else None
        counts = succeeded[-1].counts if succeeded else _furthest(reported[-1].counts if reported else None,
                                                                  live.get(index))
        if last is None:
            state = "waiting"
        elif succeeded:
            state = "succeeded"
        elif not last.terminated:
            state = "active"
        elif last.exit_code in (EXIT_CONFIG, EXIT_THRESHOLD) or index in failed_indexes:
            state = "failed"
        else:
            state = "retrying"  # the Job makes a new pod, which resumes the shard
        result.append(Shard(index, state, counts, last, len(attempts)))
    return result


def _furthest(reported: Counts | None, live: Counts | None) -> Counts | None:
    """A shard's counts only grow (a retry resumes), so the one with more mini-batches is newer."""
    if reported is None or (live is not None and live.mini_batches > reported.mini_batches):
        return live
    return reported


@dataclass(frozen=True)
class Scoring:
    counts: Counts
    active: int
    succeeded: int
    failed: int
    complete: bool  # every shard succeeded
    failure: tuple[str, str] | None  # (reason, message) when the run cannot succeed


def observe_scoring(spec: JobSpec, pods: Iterable[PodState], job: JobState | None,
                    total_mini_batches: int, live: Mapping[int, Counts] | None = None) -> Scoring:
    judged = shards([p for p in pods if p.component == SCORING], shards_with_work(total_mini_batches, spec.node_count),
                    job.failed_indexes if job else frozenset(), live)
    counts = Counts()
    for shard in judged:
        if shard.counts:
            counts.add(shard.counts)
    states = [s.state for s in judged]
    return Scoring(counts=counts, active=states.count("active") + states.count("retrying"),
                   succeeded=states.count("succeeded"), failed=states.count("failed"),
                   complete=all(s == "succeeded" for s in states),
                   failure=_failure(spec, judged, job, counts, total_mini_batches))


def _failure(spec: JobSpec, judged: list[Shard], job: JobState | None, counts: Counts,
             total: int) -> tuple[str, str] | None:
    failed = [s for s in judged if s.state == "failed"]
    exceeded = spec_threshold_exceeded(spec, counts, total)
    over = [s for s in failed if s.last.exit_code == EXIT_THRESHOLD]
    if exceeded or over:
        why = exceeded or f"shard {over[0].index} exceeded a threshold on its own ({over[0].last.describe()})"
        return "ErrorThresholdExceeded", f"{why}; {describe_counts(counts, total)}"
    for shard in failed:
        if shard.last.exit_code == EXIT_CONFIG:
            return "ConfigurationError", f"shard {shard.index}: {shard.last.describe()}"
    if failed:
        shard = failed[0]
        return "RetriesExhausted", (f"shard {shard.index} failed {shard.attempts} time(s), the last: "
                                    f"{shard.last.describe()}")
    if job and job.finished == "Failed":
        return "ScoringJobFailed", f"Job {job.name} failed: {job.reason}: {job.message}".rstrip(": ")
    return None


def describe_counts(counts: Counts, total: int | None) -> str:
    of = f" of {total}" if total is not None else ""
    return (f"mini-batches: {counts.mini_batches_succeeded} succeeded, {counts.mini_batches_failed} failed{of}; "
            f"items: {counts.items_succeeded} succeeded, {counts.items_failed} failed")


# -- merge -------------------------------------------------------------------------


def observe_merge(pods: Iterable[PodState],
                  job: JobState | None) -> tuple[Literal["Succeeded", "Failed"] | None, str]:
    """("Succeeded" | "Failed" | None while it runs, a message)."""
    attempts = sorted((p for p in pods if p.component == MERGE), key=lambda p: p.order)
    for pod in attempts:
        if pod.phase == "Succeeded":
            return "Succeeded", ""
    last = attempts[-1] if attempts else None
    if last is not None and last.phase == "Failed" and last.exit_code in (EXIT_CONFIG, EXIT_THRESHOLD):
        return "Failed", last.describe()
    if job and job.finished == "Failed":
        detail = last.describe() if last is not None and last.terminated else f"{job.reason}: {job.message}"
        return "Failed", f"Job {job.name} failed after {len(attempts)} attempt(s); {detail}"
    if job and job.finished == "Complete":
        return "Succeeded", ""
    return None, ""
