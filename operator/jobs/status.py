"""A BatchInferenceJob's progress in its status: pure functions (phases and conditions: kit.conditions)."""

from __future__ import annotations

from datetime import datetime

from parallelrun.runner.accounting import Counts


def with_progress(status: dict, counts: Counts, total: int | None, active: int, succeeded: int, failed: int,
                  node_count: int) -> dict:
    """`status` with the counts so far (a new dict)."""
    mini_batches = {"succeeded": counts.mini_batches_succeeded, "failed": counts.mini_batches_failed}
    if total is not None:
        mini_batches["total"] = total
    return dict(
        status,
        progress={"miniBatches": mini_batches,
                  "items": {"succeeded": counts.items_succeeded, "failed": counts.items_failed}},
        progressText=f"{counts.mini_batches}/{total if total is not None else '?'}",
        nodes={"active": active, "succeeded": succeeded, "failed": failed},
        nodesText=f"{active}/{node_count}",
    )


def counts_of(status: dict) -> Counts:
    """The counts a status already reports (an operator restart starts from them)."""
    return Counts.from_dict(status.get("progress") or {})


def with_throughput(status: dict, at: datetime) -> dict:
    """`status` with itemsPerSecond: the items it reports over the time since its startTime (a new dict)."""
    start = status.get("startTime")
    if not start:
        return status
    seconds = (at - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    items = counts_of(status).items
    return dict(status, itemsPerSecond=round(items / seconds, 1) if seconds > 0 else 0.0)
