"""What the pods and Jobs of a run say: per-shard outcomes, summed counts, the verdict.

Counts come from the scoring pods' termination messages (the runner contract) and,
for a shard still running, from the progress file its pod publishes, so they can be
recomputed from scratch at any moment, after an operator restart too. Each shard
counts once: its succeeded pod, or else the furthest of its latest attempt that left
counts and its progress file. A retried pod resumes from what is committed and
reports the shard's whole count, so adding up attempts would count items twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from parallelrun.runner.accounting import Counts, spec_threshold_exceeded
from parallelrun.runner.contract import EXIT_CONFIG, EXIT_THRESHOLD
from parallelrun.runner.plan import shards_with_work
from parallelrun.runner.records import ShardProgress, progress_total
from parallelrun.runner.spec import JobSpec

from ..kit.observe import JobState, PodState
from .manifests import MERGE, SCORING

ShardState = Literal["waiting", "active", "retrying", "succeeded", "failed"]

# -- scoring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One index of the scoring Job, judged from all its pods."""

    index: int
    state: ShardState
    counts: Counts | None  # the counts that stand for this shard (see the module's doc)
    last: PodState | None  # the latest attempt
    attempts: int

    @property
    def latest(self) -> PodState:
        """The latest attempt of a shard that failed or is retrying (it has one)."""
        assert self.last is not None, f"shard {self.index} has no pod yet"
        return self.last


def shards(pods: Iterable[PodState], node_count: int, failed_indexes: frozenset[int] = frozenset(),
           live: Mapping[int, Counts] | None = None) -> list[Shard]:
    """Each index judged; `live` holds the counts of the progress files."""
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
        state: ShardState
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
                    total_mini_batches: int, live: Mapping[int, ShardProgress] | None = None) -> Scoring:
    """The indexes judged are the scoring Job's (its completions follow spec.nodeCount when it
    changes: pods claim work, so any number of them can run the plan)."""
    indexes = job.completions if job and job.completions else shards_with_work(total_mini_batches, spec.node_count)
    live = live or {}
    judged = shards([p for p in pods if p.component == SCORING], indexes,
                    job.failed_indexes if job else frozenset(), {i: p.counts for i, p in live.items()})
    counts = Counts()
    for shard in judged:
        if shard.counts:
            counts.add(shard.counts)
    # The indexes' sum misses a dead pod's commits in a chunk another pod took over, and the indexes
    # a scale-down removed; the progress files count each chunk once, wherever it was scored. Both
    # count only what is committed: the larger is the nearer.
    by_chunk = progress_total(live.values())
    if by_chunk.mini_batches > counts.mini_batches:
        counts = by_chunk
    states = [s.state for s in judged]
    return Scoring(counts=counts, active=states.count("active") + states.count("retrying"),
                   succeeded=states.count("succeeded"), failed=states.count("failed"),
                   complete=all(s == "succeeded" for s in states),
                   failure=_failure(spec, judged, job, counts, total_mini_batches))


def _failure(spec: JobSpec, judged: list[Shard], job: JobState | None, counts: Counts,
             total: int) -> tuple[str, str] | None:
    failed = [s for s in judged if s.state == "failed"]
    exceeded = spec_threshold_exceeded(spec, counts, total)
    over = [s for s in failed if s.latest.exit_code == EXIT_THRESHOLD]
    if exceeded or over:
        why = exceeded or f"shard {over[0].index} exceeded a threshold on its own ({over[0].latest.describe()})"
        return "ErrorThresholdExceeded", f"{why}; {describe_counts(counts, total)}"
    for shard in failed:
        if shard.latest.exit_code == EXIT_CONFIG:
            return "ConfigurationError", f"shard {shard.index}: {shard.latest.describe()}"
    if failed:
        shard = failed[0]
        return "RetriesExhausted", (f"shard {shard.index} failed {shard.attempts} time(s), the last: "
                                    f"{shard.latest.describe()}")
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
