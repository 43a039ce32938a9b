"""Local mode: plan → `nodeCount` shards × `processCountPerNode` workers → merge, on this machine.

Each shard is the same ShardRunner a scoring pod runs, here on a thread of its own
(the work happens in the worker processes). The shards share one tally, so a
threshold stops every shard at once, as the operator stops the Job. The shards share
this machine too: at most PROCESSES_PER_CPU worker processes per CPU run at once (at
least one shard), the other shards wait for a running one to end, so memory does not
grow with nodeCount. The first shards' workers start before the run is planned:
importing the entry script and init() overlap planning (WorkerPool.plan); the others
start with their shard, no more workers than it has mini-batches.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from contextlib import ExitStack, nullcontext

from rich.console import Console
from rich.table import Table

from .accounting import Counts, spec_threshold_exceeded
from .aml import load_job_file
from .contract import PermanentError
from .layout import Layout, run_id_for
from .lock import RunLock
from .merge import MergeError, merge
from .plan import Plan, ensure_plan
from .pool import InitError, WorkerPool
from .repair import prepare_repair, repair_target
from .resources import available_cpus, process_count
from .runlogs import temporary_log_dir
from .runs import reusable
from .shard import ShardRunner, start_pool
from .spec import JobSpec
from .storage import filesystem, is_local, remove_stale_temporaries, storage_error

PROCESSES_PER_CPU = 4  # worker processes that may run at once on one CPU of this machine


class LocalRunError(RuntimeError):
    """The run did not succeed; the message is the one-line reason, `summary` the run's
    summary where it got as far as one."""

    def __init__(self, message: str, exit_code: int = 1, summary: dict | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.summary = summary


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


def run_local(path: str, overrides: list[str] = (), fresh: bool = False, console: Console | None = None,
              retry_failed: bool = False) -> dict:
    """Run a BatchInferenceJob (or AML v2 parallel job) file here; returns the summary or raises LocalRunError.
    `retry_failed` (or spec.retryFailed): repair the job's finished run instead (repair.py)."""
    console = console or Console(stderr=True)
    spec = load_job_file(path, overrides)
    fs, out = filesystem(spec.output.uri)
    if retry_failed or spec.retry_failed:
        return _repair(spec, fs, out, console)
    layout = Layout(out, run_id_for(spec, _entry_script_bytes(spec)), spec.output.format)
    with RunLock(fs, out, layout.run_id):
        return _run(spec, fs, layout, fresh, console)


def _repair(spec: JobSpec, fs, out: str, console: Console) -> dict:
    """Rerun the failed mini-batches of the job's finished run and merge a new version of its output."""
    run_id, summary = repair_target(fs, out, spec)
    layout = Layout(out, run_id, spec.output.format)
    with RunLock(fs, out, run_id):
        if not prepare_repair(spec, fs, layout, summary):
            console.print(f"run {run_id} has no failed item: nothing to repair")
            return summary
        console.print(f"Repairing run {run_id}: its failed mini-batches run again with the script and model "
                      "as they are now")
        return _run(spec, fs, layout, False, console)


def _run(spec: JobSpec, fs, layout: Layout, fresh: bool, console: Console) -> dict:
    """Reuse a finished run, or plan (or resume) it, score every shard and merge."""
    if spec.allow_reuse and not fresh and (reused := reusable(spec, fs, layout)) is not None:
        console.print(f"[bold]allowReuse[/]: run {layout.run_id} already succeeded on this input; reusing its output")
        return reused
    if fs.exists(layout.root) and (fresh or fs.exists(layout.summary)):
        fs.rm(layout.root, recursive=True)
    log_dir = os.path.join(layout.root, "logs") if is_local(fs) else temporary_log_dir(layout.run_id)
    scratch = tempfile.mkdtemp(prefix="parallelrun-")
    with ExitStack() as pools:
        # The workers import the entry script and run init() while this process plans.
        workers = process_count(spec)
        at_once = _shards_at_once(workers)
        early = min(spec.node_count, at_once) if workers <= PROCESSES_PER_CPU * available_cpus() else 0
        try:
            shard_pools = [pools.enter_context(start_pool(spec, layout, k, scratch=os.path.join(scratch, str(k)),
                                                          log_dir=log_dir, plan_header=None))
                           for k in range(early)]
        except Exception as e:  # a missing entry script or model: as a shard would report it
            raise _shard_failure(e, log_dir, console) from e
        plan = _plan(spec, fs, layout, console, at_once)
        for pool in shard_pools[len([s for s in plan.shards if s.count]):]:
            pool.close()  # no work for its shard
        stopped, started = _score(spec, plan, fs, layout, log_dir, scratch, shard_pools, at_once, console)
    with _status(console, "Merging the output..."):
        try:
            summary = merge(spec, plan, fs, layout, write_final=stopped is None)
        except MergeError as e:  # as a merge pod: not worth retrying (exit 2)
            raise LocalRunError(f"cannot merge: {e}", e.exit_code) from e
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["logs"] = log_dir
    _print_summary(console, summary)
    if summary["status"] != "Succeeded":
        raise LocalRunError(f"stopped: {summary['reason'] or stopped}; details in {summary['errors']}",
                            summary=summary)
    return summary


def _status(console: Console, text: str):
    """console.status(text) where it shows (a terminal, Jupyter); elsewhere rich shows nothing
    of it, and its import and refresh thread are spared."""
    return console.status(text) if console.is_terminal or console.is_jupyter else nullcontext()


def _shards_at_once(workers: int) -> int:
    """How many local shards of `workers` processes each may run at once on this machine."""
    return max(1, PROCESSES_PER_CPU * available_cpus() // workers)


def _plan(spec: JobSpec, fs, layout: Layout, console: Console, at_once: int) -> Plan:
    """The run's plan: a new one, or an interrupted run's (it resumes)."""
    if fs.exists(layout.plan_header):
        console.print(f"Resuming run {layout.run_id} (committed mini-batches are kept)")

    with _status(console, "Planning: listing the input..."):
        started = time.monotonic()
        plan = ensure_plan(spec, fs, layout)
    items = f"{plan.total_items:,} items" if plan.total_items is not None else f"{plan.total_bytes:,} bytes"
    workers = process_count(spec)
    shards = sum(1 for s in plan.shards if s.count)
    console.print(f"Planned {plan.total_mini_batches:,} mini-batches ({items}) over {shards:,} "
                  f"node(s) × {workers} process(es) in {time.monotonic() - started:.1f}s")
    _warn_oversubscribed(console, spec, plan, workers, at_once)
    return plan


def _score(spec: JobSpec, plan: Plan, fs, layout: Layout, log_dir: str, scratch: str, pools: list[WorkerPool],
           at_once: int, console: Console) -> tuple[str | None, float]:
    """Every shard with work on a thread of its own, `at_once` of them running at a time, and
    progress shown meanwhile. Shard k < len(pools) has its pool started before planning (they
    run first); the others start theirs when their turn comes.

    Returns why the shards were stopped (a threshold; None: they all finished) and when
    scoring started; raises LocalRunError when a shard failed or the run was interrupted."""
    tally = _Tally(spec, plan)
    errors = []
    running = []  # the shards still running; `finished` is set when none is
    finished = threading.Event()

    early = [s.index for s in plan.shards if s.count and s.index < len(pools)]
    turns = threading.Semaphore(at_once - len(early))  # the early shards hold their turns from the start

    def run_shard(runner: ShardRunner) -> None:
        try:
            if runner.index not in early:
                turns.acquire()
            runner.run()
        except PermanentError as e:
            errors.append(e)
            tally.stop(str(e))
        except BaseException as e:  # noqa: BLE001 - reported below, after the other shards stop
            errors.append(e)
            tally.stop(f"{type(e).__name__}: {e}")
        finally:
            turns.release()
            running.remove(runner)
            if not running:
                finished.set()

    runners = [ShardRunner(spec, plan, fs, layout, s.index, scratch=os.path.join(scratch, str(s.index)),
                           log_dir=log_dir, on_progress=tally.update, should_stop=lambda: tally.stop_reason is not None,
                           pool=pools[s.index] if s.index < len(pools) else None)
               for s in plan.shards if s.count]  # a shard without work starts no thread
    threads = [threading.Thread(target=run_shard, args=(r,), daemon=True) for r in runners]
    running.extend(runners)
    if not runners:
        finished.set()
    workers = sum(min(process_count(spec), s.count) for s in plan.shards if s.count)
    report = _Reporter(console, plan, runners, tally, workers)
    try:
        with report:
            for t in threads:
                t.start()
            # Not t.join(0.05): on CPython < 3.13 a join that Ctrl-C/SIGTERM interrupts marks the
            # still-running thread stopped, and the run would exit with its workers still busy.
            while not finished.wait(0.05):  # the end is noticed at once: it counts in small jobs
                report.show()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (processes.Terminated, exit code 143)
        tally.stop("interrupted")
        for t in threads:
            t.join()
        raise LocalRunError(f"interrupted; run the same command again to resume run {layout.run_id}",
                            getattr(e, "exit_code", 130)) from e
    if errors:
        # Workers killed as the run stopped may have been writing: no half-written part or marker stays.
        for folder in (layout.parts_dir, layout.done_dir):
            remove_stale_temporaries(fs, folder)
        raise _shard_failure(errors[0], log_dir, console)
    return tally.stop_reason, report.started


def _shard_failure(e: BaseException, log_dir: str, console: Console) -> LocalRunError:
    """A shard's exception as the run's one-line reason and exit code."""
    if isinstance(e, InitError):
        console.print(e.traceback, style="red", markup=False, highlight=False)
        return LocalRunError(f"the scoring script cannot load: {e} (worker logs: {log_dir})", e.exit_code)
    if isinstance(e, PermanentError):  # a missing entry script or model, storage refusing...
        return LocalRunError(str(e), e.exit_code)
    if (fault := storage_error(e)) is not None:
        return LocalRunError(str(fault), fault.exit_code)
    return LocalRunError(f"a shard crashed: {type(e).__name__}: {e}")


def _warn_oversubscribed(console: Console, spec: JobSpec, plan: Plan, workers: int, at_once: int) -> None:
    """Local shards share this machine: a request beyond it is said, with what runs instead."""
    shards = [s for s in plan.shards if s.count]
    asked = spec.node_count * workers
    cpus = available_cpus()
    if asked <= PROCESSES_PER_CPU * cpus:
        return
    started = sum(min(workers, s.count) for s in shards[:at_once])
    console.print(f"[yellow]warning:[/] nodeCount {spec.node_count:,} × processCountPerNode {workers:,} asks for "
                  f"{asked:,} worker processes on {cpus} CPU(s) and {plan.total_mini_batches:,} mini-batches: "
                  f"{len(shards):,} shard(s) with work, at most {at_once:,} at once, {started:,} worker processes "
                  f"at first (no more than their mini-batches). On one machine, nodeCount 1 and "
                  f"processCountPerNode ≈ CPUs is usually fastest")


class _Reporter:
    """Progress while scoring: a live bar on a terminal, otherwise a line every PLAIN_SECONDS.
    Until the first mini-batch ends it says that the workers start (their init() may load a
    model for minutes). Rates and the ETA count only this attempt's work, not what a resumed
    run had committed."""

    PLAIN_SECONDS = 5.0

    def __init__(self, console: Console, plan: Plan, runners: list, tally: _Tally, workers: int):
        self.console, self.plan, self.runners, self.tally = console, plan, runners, tally
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

    def __enter__(self) -> _Reporter:
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
        counts = self.tally.total()
        resumed = Counts()
        for r in self.runners:
            resumed.add(r.resumed)
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


def _print_summary(console: Console, summary: dict) -> None:
    table = Table(title=f"run {summary['runId']}: {summary['status']}", show_header=True)
    table.add_column("")
    for name in ("planned", "succeeded", "failed", "not run"):
        table.add_column(name, justify="right")
    for name, key in (("mini-batches", "miniBatches"), ("items", "items")):
        c, planned = summary[key], summary["plan"][key]
        done = c["succeeded"] + c["failed"]
        table.add_row(name, _number(planned), f"{c['succeeded']:,}", f"{c['failed']:,}",
                      _number(None if planned is None else planned - done))
    console.print(table)
    if summary["output"]:
        console.print(f"output: {summary['output']['uri']} ({summary['output']['bytes']:,} bytes)")
    if summary.get("previousOutput"):
        console.print(f"an earlier run's output was moved to {summary['previousOutput']}: it is not this run's")
    if summary["items"]["failed"]:
        console.print(f"errors: {summary['errors']}")
    if summary.get("warning"):
        console.print(f"[yellow]warning:[/] {summary['warning']['message']}", highlight=False)
    console.print(f"summary: {summary['summary']}")
    console.print(f"time: {summary['seconds']}s   worker logs: {summary['logs']}")


def _number(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"
