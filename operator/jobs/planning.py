"""Planning a run from the operator: the runner's planner, off the event loop.

Listing a million files is blocking I/O for seconds; it runs in a small pool of its
own threads, so neither kopf's event loop nor the API calls of other resources wait
for it, and a burst of new resources does not start a burst of listings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from parallelrun.runner.layout import Layout
from parallelrun.runner.plan import Plan, ensure_plan
from parallelrun.runner.spec import JobSpec
from parallelrun.runner.storage import filesystem


def plan_run(spec: JobSpec, run_id: str, env: Mapping[str, str]) -> Plan:
    """The run's plan: written now, or the one committed before (an operator restart)."""
    fs, path = filesystem(spec.output.uri, env)
    return ensure_plan(spec, fs, Layout(path, run_id, spec.output.format), env)


class Planner:
    def __init__(self, concurrency: int = 2):
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="parallelrun-plan")

    async def plan(self, spec: JobSpec, run_id: str, env: Mapping[str, str]) -> Plan:
        return await asyncio.get_running_loop().run_in_executor(self._pool, plan_run, spec, run_id, env)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
