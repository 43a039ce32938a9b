"""Counting items and mini-batches, and Azure ML's error thresholds over the counts.

The rule (AML's): every element run() returns is one succeeded item and the
shortfall is failed items; a mini-batch whose every attempt raised, timed out or
crashed is a failed mini-batch and all its items are failed items. So for any run:
succeeded items + failed items == items in the plan.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counts:
    mini_batches_succeeded: int = 0
    mini_batches_failed: int = 0
    items_succeeded: int = 0
    items_failed: int = 0

    def add(self, other: Counts) -> None:
        self.mini_batches_succeeded += other.mini_batches_succeeded
        self.mini_batches_failed += other.mini_batches_failed
        self.items_succeeded += other.items_succeeded
        self.items_failed += other.items_failed

    @property
    def mini_batches(self) -> int:
        return self.mini_batches_succeeded + self.mini_batches_failed

    @property
    def items(self) -> int:
        return self.items_succeeded + self.items_failed

    def to_dict(self) -> dict:
        """The termination message's shape (DESIGN.md, "Runner contract")."""
        return {"miniBatches": {"succeeded": self.mini_batches_succeeded, "failed": self.mini_batches_failed},
                "items": {"succeeded": self.items_succeeded, "failed": self.items_failed}}

    @classmethod
    def from_dict(cls, d: dict) -> Counts:
        mb, items = d.get("miniBatches", {}), d.get("items", {})
        return cls(mb.get("succeeded", 0), mb.get("failed", 0), items.get("succeeded", 0), items.get("failed", 0))


def progress_text(done: int | None, total: int, failed_items: int | None) -> str:
    """A scoring run's progress for a person: '12/40 mini-batches, 3 failed items'."""
    failed = f", {failed_items:,} failed item{'s' if failed_items != 1 else ''}" if failed_items else ""
    return f"{done or 0:,}/{total:,} mini-batches{failed}"


def threshold_exceeded(counts: Counts, total_mini_batches: int, error_threshold: int,
                       mini_batch_error_threshold: int, allowed_failed_percent: int) -> str | None:
    """Why the counts exceed a threshold, or None. -1 disables each threshold.

    `total_mini_batches` is the plan's total, so the percentage can be held as soon
    as failures happen, not only at the end.
    """
    if error_threshold != -1 and counts.items_failed > error_threshold:
        return f"{counts.items_failed} failed items exceed errorThreshold {error_threshold}"
    if mini_batch_error_threshold != -1 and counts.mini_batches_failed > mini_batch_error_threshold:
        return (f"{counts.mini_batches_failed} failed mini-batches exceed miniBatchErrorThreshold "
                f"{mini_batch_error_threshold}")
    if allowed_failed_percent != -1 and total_mini_batches:
        percent = 100.0 * counts.mini_batches_failed / total_mini_batches
        if percent > allowed_failed_percent:
            return (f"{counts.mini_batches_failed} of {total_mini_batches} mini-batches failed ({percent:.1f}%), "
                    f"over allowedFailedPercent {allowed_failed_percent}")
    return None


def spec_threshold_exceeded(spec, counts: Counts, total_mini_batches: int) -> str | None:
    return threshold_exceeded(counts, total_mini_batches, spec.error_threshold,
                              spec.mini_batch_error_threshold, spec.allowed_failed_percent)


ALL_ITEMS_FAILED = "AllItemsFailed"  # the warning's reason: a condition type on the cluster


def all_items_failed(counts: Counts) -> str | None:
    """The warning of a finished run in which every item failed (thresholds of -1 let it
    succeed, as in AML), or None: such a run's output has no rows, which must not pass unseen."""
    if counts.items_failed and not counts.items_succeeded:
        return (f"every item failed ({counts.items_failed:,} of {counts.items_failed:,}); the run succeeded only "
                "because the error thresholds allow it, and its output has no rows: see errors.jsonl")
    return None
