"""Prometheus metrics of the operator (served with --metrics-port).

    parallelrun_jobs{phase}                         BatchInferenceJobs by phase, now
    parallelrun_items_total{result}                 items scored, by succeeded/failed
    parallelrun_mini_batches_total{result}          mini-batches scored, by succeeded/failed
    parallelrun_reconcile_duration_seconds          one reconcile step of one resource
    parallelrun_plan_duration_seconds               planning one run (listing its input)
    parallelrun_queue_duration_seconds              a scoring Job's wait for Kueue to admit it
    parallelrun_schedule_runs_started_total{trigger} PipelineRuns started by schedules (schedule, manual, data)
    parallelrun_schedule_missed_slots_total         schedule slots missed (downtime, deadline, policy)
    parallelrun_schedule_lag_seconds                from a slot to the creation of its run

Item and mini-batch counters grow by what this process saw happen: a run that an
operator restart finds half done adds only what is done after the restart.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from parallelrun.runner.accounting import Counts

from .conditions import PENDING, Phase

JOBS = Gauge("parallelrun_jobs", "BatchInferenceJobs by phase.", ["phase"])
ITEMS = Counter("parallelrun_items", "Items scored, by result.", ["result"])
MINI_BATCHES = Counter("parallelrun_mini_batches", "Mini-batches scored, by result.", ["result"])
RECONCILE_SECONDS = Histogram("parallelrun_reconcile_duration_seconds", "Duration of one reconcile step.",
                              buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))
PLAN_SECONDS = Histogram("parallelrun_plan_duration_seconds", "Duration of planning a run.",
                         buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300))

QUEUE_SECONDS = Histogram("parallelrun_queue_duration_seconds", "From a scoring Job queued to its admission by Kueue.",
                          buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600))

PHASES = get_args(Phase)


class PhaseGauge:
    """Keeps parallelrun_jobs{phase} equal to the resources seen in each phase."""

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}

    def observe(self, uid: str, phase: str | None) -> None:
        self._phases[uid] = phase or PENDING
        self._publish()

    def forget(self, uid: str) -> None:
        self._phases.pop(uid, None)
        self._publish()

    def _publish(self) -> None:
        values = list(self._phases.values())
        for phase in PHASES:
            JOBS.labels(phase).set(values.count(phase))


def count_progress(before: Counts, after: Counts) -> None:
    """Add what was scored between two observations of one run."""
    for counter, result, delta in (
            (ITEMS, "succeeded", after.items_succeeded - before.items_succeeded),
            (ITEMS, "failed", after.items_failed - before.items_failed),
            (MINI_BATCHES, "succeeded", after.mini_batches_succeeded - before.mini_batches_succeeded),
            (MINI_BATCHES, "failed", after.mini_batches_failed - before.mini_batches_failed)):
        if delta > 0:
            counter.labels(result).inc(delta)

SCHEDULE_RUNS = Counter("parallelrun_schedule_runs_started", "PipelineRuns started by schedules, by trigger.",
                        ["trigger"])
SCHEDULE_MISSED = Counter("parallelrun_schedule_missed_slots", "Schedule slots missed (not run on time).")
SCHEDULE_LAG = Histogram("parallelrun_schedule_lag_seconds", "From a slot to its run's creation.",
                         buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
