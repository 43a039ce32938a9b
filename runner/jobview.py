"""What a person sees of a local run: the terminal side of local.py, as an observer.

The driver (local.py) says what happens (planned, scoring with these counts, merged,
stopped) and JobView words it: rich's live bar and tables on a terminal, plain lines
elsewhere (a CI log, a pipe), so the driver holds no presentation and another front end
(a notebook, the report) could watch the same events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

from rich.console import Console
from rich.table import Table

from .accounting import Counts
from .plan import Plan
from .records import RunSummary


class JobView:
    def __init__(self, console: Console):
        self.console = console

    def status(self, text: str):
        """console.status(text) where it shows (a terminal, Jupyter); elsewhere rich shows nothing
        of it, and its import and refresh thread are spared."""
        return self.console.status(text) if self.console.is_terminal or self.console.is_jupyter else nullcontext()

    def reused(self, run_id: str) -> None:
        self.console.print(f"[bold]allowReuse[/]: run {run_id} already succeeded on this input; reusing its output")

    def repairing(self, run_id: str) -> None:
        self.console.print(f"Repairing run {run_id}: its failed mini-batches run again with the script and model "
                           "as they are now")

    def nothing_to_repair(self, run_id: str) -> None:
        self.console.print(f"run {run_id} has no failed item: nothing to repair")

    def resuming(self, run_id: str) -> None:
        self.console.print(f"Resuming run {run_id} (committed mini-batches are kept)")

    def planned(self, plan: Plan, seconds: float, workers: int) -> None:
        items = f"{plan.total_items:,} items" if plan.total_items is not None else f"{plan.total_bytes:,} bytes"
        shards = sum(1 for s in plan.shards if s.count)
        self.console.print(f"Planned {plan.total_mini_batches:,} mini-batches ({items}) over {shards:,} "
                           f"node(s) × {workers} process(es) in {seconds:.1f}s")

    def oversubscribed(self, node_count: int, workers: int, cpus: int, plan: Plan, at_once: int,
                       started: int) -> None:
        """Local shards share this machine: a request beyond it is said, with what runs instead."""
        shards = sum(1 for s in plan.shards if s.count)
        self.console.print(f"[yellow]warning:[/] nodeCount {node_count:,} × processCountPerNode {workers:,} asks "
                           f"for {node_count * workers:,} worker processes on {cpus} CPU(s) and "
                           f"{plan.total_mini_batches:,} mini-batches: {shards:,} shard(s) with work, at most "
                           f"{at_once:,} at once, {started:,} worker processes at first (no more than their "
                           "mini-batches). On one machine, nodeCount 1 and processCountPerNode ≈ CPUs is usually "
                           "fastest")

    def init_failed(self, traceback: str) -> None:
        self.console.print(traceback, style="red", markup=False, highlight=False)

    def scoring(self, plan: Plan, workers: int, counts: Callable[[], Counts],
                resumed: Callable[[], Counts]) -> ScoringView:
        return ScoringView(self.console, plan, workers, counts, resumed)

    def finished(self, summary: RunSummary) -> None:
        """The run's summary: counts by planned, succeeded, failed and not run, and where things are."""
        table = Table(title=f"run {summary.run_id}: {summary.status}", show_header=True)
        table.add_column("")
        for name in ("planned", "succeeded", "failed", "not run"):
            table.add_column(name, justify="right")
        c = summary.counts
        for name, planned, succeeded, failed in (
                ("mini-batches", summary.plan_mini_batches, c.mini_batches_succeeded, c.mini_batches_failed),
                ("items", summary.plan_items, c.items_succeeded, c.items_failed)):
            table.add_row(name, _number(planned), f"{succeeded:,}", f"{failed:,}",
                          _number(None if planned is None else planned - succeeded - failed))
        console = self.console
        console.print(table)
        if summary.output:
            console.print(f"output: {summary.output['uri']} ({summary.output['bytes']:,} bytes)")
        if summary.previous_output:
            console.print(f"an earlier run's output was moved to {summary.previous_output}: it is not this run's")
        if c.items_failed:
            console.print(f"errors: {summary.errors}")
        if summary.warning:
            console.print(f"[yellow]warning:[/] {summary.warning['message']}", highlight=False)
        console.print(f"summary: {summary.summary}")
        console.print(f"time: {summary.seconds}s   worker logs: {summary.logs}")


class ScoringView:
    """Progress while scoring: a live bar on a terminal, otherwise a line every PLAIN_SECONDS.
    Until the first mini-batch ends it says that the workers start (their init() may load a
    model for minutes). Rates and the ETA count only this attempt's work, not what a resumed
    run had committed."""

    PLAIN_SECONDS = 5.0

    def __init__(self, console: Console, plan: Plan, workers: int, counts: Callable[[], Counts],
                 resumed: Callable[[], Counts]):
        """`counts`: the run's counts so far; `resumed`: what earlier attempts had committed."""
        self.console, self.plan, self.counts, self.resumed = console, plan, counts, resumed
        self.starting = f"Starting {workers:,} worker{'s' if workers != 1 else ''} (init)…"
        self.started = time.monotonic()
        self._last_line = self.started
        self._progress = None
        if console.is_terminal:  # rich.progress is imported where it shows
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("mini-batches"),
                                      TextColumn("{task.fields[items]}"),
                                      TextColumn("[red]{task.fields[failed]}"), TimeElapsedColumn(),
                                      TextColumn("ETA {task.fields[eta]}"), console=console, transient=False)
            self._task = self._progress.add_task(self.starting, total=plan.total_mini_batches, items="", failed="",
                                                 eta="-")

    def __enter__(self) -> ScoringView:
        if self._progress is not None:
            self._progress.start()
        elif self.plan.total_mini_batches:
            self.console.print(self.starting, markup=False, highlight=False)
        return self

    def __exit__(self, *exc) -> None:
        self.show(final=True)
        if self._progress is not None:
            self._progress.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def show(self, final: bool = False) -> None:
        counts, resumed = self.counts(), self.resumed()
        seconds = max(self.elapsed(), 1e-9)
        rate = (counts.items - resumed.items) / seconds
        batch_rate = (counts.mini_batches - resumed.mini_batches) / seconds
        left = self.plan.total_mini_batches - counts.mini_batches
        eta = _duration(left / batch_rate) if batch_rate > 0 and left else "-"
        failed = f"{counts.items_failed:,} failed" if counts.items_failed else ""
        items = f"{counts.items:,} items ({rate:,.0f}/s)"
        if self._progress is not None:
            started = counts.mini_batches > resumed.mini_batches or final
            self._progress.update(self._task, completed=counts.mini_batches, items=items, failed=failed, eta=eta,
                                  description="Scoring" if started else self.starting)
        elif final or time.monotonic() - self._last_line >= self.PLAIN_SECONDS:
            self._last_line = time.monotonic()
            self.console.print(f"Scoring: {counts.mini_batches:,}/{self.plan.total_mini_batches:,} mini-batches, "
                               f"{items}{', ' + failed if failed else ''}, {_duration(self.elapsed())} elapsed"
                               f"{', ETA ' + eta if not final and eta != '-' else ''}", markup=False, highlight=False)


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def _number(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"
