"""Local mode: plan → `nodeCount` shards × `processCountPerNode` workers → merge, on this machine.

Each shard is the same ShardRunner a scoring pod runs, here on a thread of its own
(the work happens in the worker processes). The shards share one tally, so a
threshold stops every shard at once, as the operator stops the Job.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .accounting import Counts, spec_threshold_exceeded
from .layout import Layout, run_id_for
from .merge import merge
from .plan import Plan, ensure_plan
from .pool import InitError
from .shard import ConfigError, ShardRunner, process_count
from .spec import JobSpec, load_spec_file
from .storage import filesystem, is_local


class LocalRunError(RuntimeError):
    """The run did not succeed; the message is the one-line reason."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class _Tally:
    """Counts of all shards, updated from their threads."""

    def __init__(self, spec: JobSpec, plan: Plan):
        self.spec, self.plan = spec, plan
        self._lock = threading.Lock()
        self._shards: dict[int, Counts] = {}
        self.stop_reason: str | None = None

    def update(self, shard: int, counts: Counts) -> None:
        with self._lock:
            self._shards[shard] = Counts(**vars(counts))
            if self.stop_reason is None:
                self.stop_reason = spec_threshold_exceeded(self.spec, self.total(), self.plan.total_mini_batches)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stop_reason = self.stop_reason or reason

    def total(self) -> Counts:
        total = Counts()
        for c in list(self._shards.values()):
            total.add(c)
        return total


def _entry_script_bytes(spec: JobSpec) -> bytes:
    """Part of the run id: editing the scoring script starts a new run instead of resuming."""
    if spec.code.uri and is_local(filesystem(spec.code.uri)[0]):
        path = os.path.join(spec.code.uri, spec.code.entry_script)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    return b""


def run_local(path: str, overrides: list[str] = (), fresh: bool = False, console: Console | None = None) -> dict:
    """Run a BatchInferenceJob file here; returns the summary or raises LocalRunError."""
    console = console or Console(stderr=True)
    spec = load_spec_file(path, overrides)
    fs, out = filesystem(spec.output.uri)
    layout = Layout(out, run_id_for(spec, _entry_script_bytes(spec)), spec.output.format)
    if fs.exists(layout.summary) and spec.allow_reuse and not fresh:
        console.print(f"[bold]allowReuse[/]: run {layout.run_id} already finished; reusing its output")
        return _read_summary(fs, layout)
    if fs.exists(layout.root) and (fresh or fs.exists(layout.summary)):
        fs.rm(layout.root, recursive=True)
    elif fs.exists(layout.plan_header):
        console.print(f"Resuming run {layout.run_id} (committed mini-batches are kept)")

    with console.status("Planning: listing the input..."):
        started = time.monotonic()
        plan = ensure_plan(spec, fs, layout)
    items = f"{plan.total_items:,} items" if plan.total_items is not None else f"{plan.total_bytes:,} bytes"
    workers = process_count(spec)
    console.print(f"Planned {plan.total_mini_batches:,} mini-batches ({items}) over {spec.node_count} "
                  f"node(s) × {workers} process(es) in {time.monotonic() - started:.1f}s")

    log_dir = os.path.join(layout.root, "logs") if is_local(fs) else tempfile.mkdtemp(prefix="parallelrun-logs-")
    tally = _Tally(spec, plan)
    results, errors = {}, []
    scratch = tempfile.mkdtemp(prefix="parallelrun-")

    def run_shard(index: int) -> None:
        runner = ShardRunner(spec, plan, fs, layout, index, scratch=os.path.join(scratch, str(index)),
                             log_dir=log_dir, on_progress=tally.update, should_stop=lambda: tally.stop_reason is not None)
        try:
            results[index] = runner.run()
        except (InitError, ConfigError) as e:
            errors.append(e)
            tally.stop(str(e))
        except BaseException as e:  # noqa: BLE001 - reported below, after the other shards stop
            errors.append(e)
            tally.stop(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run_shard, args=(s["index"],), daemon=True) for s in plan.shards]
    started = time.monotonic()
    try:
        with _progress(console) as progress:
            task = progress.add_task("Scoring", total=plan.total_mini_batches, items="", failed="")
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
                _show(progress, task, tally.total(), time.monotonic() - started)
            _show(progress, task, tally.total(), time.monotonic() - started)
    except KeyboardInterrupt:
        tally.stop("interrupted")
        for t in threads:
            t.join()
        raise LocalRunError(f"interrupted; run the same command again to resume run {layout.run_id}", 130)

    if errors:
        e = errors[0]
        if isinstance(e, InitError):
            console.print(e.traceback, style="red", markup=False, highlight=False)
            raise LocalRunError(f"the scoring script cannot load: {e} (worker logs: {log_dir})", 2)
        if isinstance(e, ConfigError):
            raise LocalRunError(str(e), 2)
        raise LocalRunError(f"a shard crashed: {type(e).__name__}: {e}")
    stopped = tally.stop_reason
    with console.status("Merging the output..."):
        summary = merge(spec, plan, fs, layout, write_final=stopped is None)
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["logs"] = log_dir
    _print_summary(console, summary)
    if summary["status"] != "Succeeded":
        raise LocalRunError(f"stopped: {summary['reason'] or stopped}; details in {summary['errors']}")
    return summary


def _read_summary(fs, layout: Layout) -> dict:
    with fs.open(layout.summary, "rb") as f:
        return json.load(f)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("mini-batches"), TextColumn("{task.fields[items]}"),
                    TextColumn("[red]{task.fields[failed]}"), TimeElapsedColumn(),
                    console=console, transient=False)


def _show(progress: Progress, task, counts: Counts, seconds: float) -> None:
    rate = counts.items_succeeded / seconds if seconds > 0 else 0.0
    failed = f"{counts.items_failed:,} failed" if counts.items_failed else ""
    progress.update(task, completed=counts.mini_batches, items=f"{counts.items:,} items ({rate:,.0f}/s)", failed=failed)


def _print_summary(console: Console, summary: dict) -> None:
    table = Table(title=f"run {summary['runId']}: {summary['status']}", show_header=True)
    table.add_column("")
    table.add_column("succeeded", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("total", justify="right")
    for name, key in (("mini-batches", "miniBatches"), ("items", "items")):
        c = summary[key]
        table.add_row(name, f"{c['succeeded']:,}", f"{c['failed']:,}", f"{c['succeeded'] + c['failed']:,}")
    console.print(table)
    if summary["output"]:
        console.print(f"output: {summary['output']['uri']} ({summary['output']['bytes']:,} bytes)")
    if summary["items"]["failed"]:
        console.print(f"errors: {summary['errors']}")
    console.print(f"time: {summary['seconds']}s   worker logs: {summary['logs']}")

