"""Planning a run from the operator, or preparing a repair: the runner's code, off the event loop.

Listing a million files is blocking I/O for seconds; it runs in a small pool of its
own threads, so neither kopf's event loop nor the API calls of other resources wait
for it, and a burst of new resources does not start a burst of listings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from parallelrun.runner.layout import Layout
from parallelrun.runner.plan import Plan, ensure_plan, read_plan
from parallelrun.runner.records import RunSummary
from parallelrun.runner.repair import RepairError, prepare_repair, repair_target
from parallelrun.runner.spec import JobSpec
from parallelrun.runner.storage import filesystem


def plan_run(spec: JobSpec, run_id: str, env: Mapping[str, str]) -> Plan:
    """The run's plan: written now, or the one committed before (an operator restart)."""
    fs, path = filesystem(spec.output.uri, env)
    return ensure_plan(spec, fs, Layout(path, run_id, spec.output.format), env)


@dataclass(frozen=True)
class Repair:
    run_id: str  # the run repaired: the job's latest finished one
    total: int  # its plan's mini-batches
    summary: RunSummary | None  # its summary when it has no failed item: nothing to repair


def prepare_run_repair(spec: JobSpec, env: Mapping[str, str]) -> Repair:
    """spec.retryFailed: the job's latest finished run (repair.py), made ready for its shards to
    score its failed mini-batches again; done again from where it stopped after a restart."""
    fs, out = filesystem(spec.output.uri, env)
    run, summary = repair_target(fs, out, spec)
    layout = Layout(out, run, spec.output.format)
    needed = prepare_repair(spec, fs, layout, summary, env)
    plan = read_plan(fs, layout)
    if plan is None:
        raise RepairError(f"run {run} has no plan under {layout.root}; it cannot be repaired")
    return Repair(run, plan.total_mini_batches, None if needed else summary)


class Planner:
    def __init__(self, concurrency: int = 2):
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="parallelrun-plan")

    async def plan(self, spec: JobSpec, run_id: str, env: Mapping[str, str]) -> Plan:
        return await asyncio.get_running_loop().run_in_executor(self._pool, plan_run, spec, run_id, env)

    async def repair(self, spec: JobSpec, env: Mapping[str, str]) -> Repair:
        return await asyncio.get_running_loop().run_in_executor(self._pool, prepare_run_repair, spec, env)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
