"""How a local pipeline run goes: each step's record, and what a person sees of it.

The driver (local.py) keeps the records and tells its view what changed; the view alone
draws: a live table on a terminal, a line per step change elsewhere, the whole table at
the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..accounting import progress_text
from . import dag
from .resolve import ResolvedStep

INTERRUPTED = "Interrupted"  # shown for a step, and the run, that Ctrl-C or SIGTERM stopped (Failed to the DAG)
_STYLE = {dag.PENDING: "dim", dag.RUNNING: "cyan", dag.SUCCEEDED: "green", dag.REUSED: "green",
          dag.FAILED: "red", dag.SKIPPED: "yellow", INTERRUPTED: "yellow"}


@dataclass
class StepRecord:
    """How one step of this run went."""

    name: str
    state: str = dag.PENDING
    started: float | None = None
    ended: float | None = None
    reused: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    message: str = ""
    log: str | None = None
    resolved: ResolvedStep | None = None
    execution: str = ""  # this run's execution of the step (owners.py)
    failed_items: int | None = None  # a batchInference step's: live while it runs, then from its run's summary
    done: int | None = None  # a batchInference step's mini-batches done so far, of `total`
    total: int | None = None
    errors: str | None = None  # a batchInference step's errors.jsonl, where it has failed items
    interrupted: bool = False  # it was running when the run was stopped

    @property
    def shown_state(self) -> str:
        return INTERRUPTED if self.interrupted and self.state == dag.FAILED else self.state

    @property
    def fingerprint(self) -> str | None:
        return self.resolved.fingerprint if self.resolved else None

    @property
    def seconds(self) -> float | None:
        return None if self.started is None else (self.ended or time.monotonic()) - self.started

    @property
    def progress(self) -> str:
        """A batchInference step's mini-batches done and failed items: '12/40 mini-batches, 3 failed items'."""
        return "" if self.total is None else progress_text(self.done, self.total, self.failed_items)


class PipelineView:
    PLAIN_SECONDS = 5.0  # off a terminal: a step's progress line at most this often

    def __init__(self, console: Console):
        self.console = console
        self._live: Live | None = None
        self._said: dict[str, tuple[float, str]] = {}  # step → when its progress was last printed, and what

    def begin(self, name: str, workdir: str, records: dict[str, StepRecord]) -> None:
        self.console.print(f"pipeline {name}: {len(records)} steps, workdir {workdir}", markup=False, highlight=False)
        if self.console.is_terminal:
            self._live = Live(self._rows(records), console=self.console, transient=True)
            self._live.start()

    def changed(self, record: StepRecord) -> None:
        """A step's state changed: a line, where no live table shows it."""
        if self._live is not None:
            return
        ran = record.state in (dag.SUCCEEDED, dag.FAILED) and record.seconds is not None
        seconds = f" in {record.seconds:.1f}s" if ran else ""
        failed = f", {record.failed_items:,} failed items" if record.failed_items else ""
        message = f": {record.message}" if record.message else ""
        self.console.print(f"step {record.name}: {record.shown_state}{seconds}{failed}{message}", markup=False,
                           highlight=False)

    def progressed(self, record: StepRecord) -> None:
        """A running step's progress moved: a line, where no live table shows it, when it changed and
        at most every PLAIN_SECONDS."""
        if self._live is not None:
            return
        when, said = self._said.get(record.name, (-self.PLAIN_SECONDS, ""))
        text = record.progress
        if text and text != said and time.monotonic() - when >= self.PLAIN_SECONDS:
            self._said[record.name] = (time.monotonic(), text)
            self.console.print(f"step {record.name}: {text}", markup=False, highlight=False)

    def refresh(self, records: dict[str, StepRecord]) -> None:
        if self._live is not None:
            self._live.update(self._rows(records))

    def warn(self, text: str) -> None:
        self.console.print(f"warning: {text}", style="yellow", markup=False, highlight=False)

    def end(self, name: str, phase: str, records: dict[str, StepRecord], log_dir: str) -> None:
        """The whole table, once the run is over (or stopped)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        table = Table(title=f"pipeline {name}: {phase}")
        for column in ("step", "state", "duration", "failed items", "reused", "outputs", "log / message"):
            table.add_column(column, overflow="fold")
        for record in records.values():
            seconds = f"{record.seconds:.1f}s" if record.seconds is not None and not record.reused else ""
            outputs = "\n".join(f"{k}: {v}" for k, v in record.outputs.items()) if record.state in dag.GOOD else ""
            errors = f"errors: {record.errors}" if record.errors else ""
            note = "\n".join(x for x in (os.path.basename(record.log) if record.log else "", errors, record.message)
                             if x)
            failed = f"{record.failed_items:,}" if record.failed_items is not None else ""
            table.add_row(record.name, f"[{_STYLE[record.shown_state]}]{record.shown_state}", seconds, failed,
                          "yes" if record.reused else "", outputs, note)
        self.console.print(table)
        self.console.print(f"step logs: {log_dir}", markup=False, highlight=False)

    def _rows(self, records: dict[str, StepRecord]) -> Table:
        table = Table(box=None, show_header=False)
        for record in records.values():
            seconds = f"{record.seconds:.1f}s" if record.seconds is not None else ""
            table.add_row(record.name, f"[{_STYLE[record.shown_state]}]{record.shown_state}", seconds,
                          record.progress)
        return table
