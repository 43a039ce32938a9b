"""Local mode: plan → `nodeCount` shards × `processCountPerNode` workers → merge, on this machine.

Each shard is the same ShardRunner a scoring pod runs, here on a thread of its own
(the work happens in the worker processes). The shards share one tally, so a
threshold stops every shard at once, as the operator stops the Job. The shards share
this machine too: at most PROCESSES_PER_CPU worker processes per CPU run at once (at
least one shard), the other shards wait for a running one to end, so memory does not
grow with nodeCount. The first shards' workers start before the run is planned:
importing the entry script and init() overlap planning (WorkerPool.plan); the others
start with their shard, no more workers than it has mini-batches. What a person sees
is jobview.JobView's, an observer of the run's events.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from contextlib import ExitStack

from rich.console import Console

from .accounting import Counts, spec_threshold_exceeded
from .aml import load_job_file
from .contract import PermanentError
from .jobview import JobView
from .layout import Layout, run_id_for
from .lock import RunLock
from .merge import MergeError, merge
from .plan import Plan, ensure_plan
from .pool import InitError, WorkerPool
from .records import ShardProgress, progress_total
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
        self._shards: dict[int, ShardProgress] = {}
        self.stop_reason: str | None = None

    def update(self, shard: int, progress: ShardProgress) -> None:
        with self._lock:
            self._shards[shard] = ShardProgress(Counts(**vars(progress.counts)),
                                                {first: Counts(**vars(c)) for first, c in progress.chunks.items()})
            if self.stop_reason is None:
                self.stop_reason = spec_threshold_exceeded(self.spec, self.total(), self.plan.total_mini_batches)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stop_reason = self.stop_reason or reason

    def total(self) -> Counts:
        """Each chunk counted once, wherever it was scored."""
        return progress_total(list(self._shards.values()))


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
    """Run a BatchInferenceJob (or AML v2 parallel job) file here; returns its summary.json (with the run's
    `seconds` and worker `logs`), or raises LocalRunError.
    `retry_failed` (or spec.retryFailed): repair the job's finished run instead (repair.py)."""
    view = JobView(console or Console(stderr=True))
    spec = load_job_file(path, overrides)
    fs, out = filesystem(spec.output.uri)
    if retry_failed or spec.retry_failed:
        return _repair(spec, fs, out, view)
    layout = Layout(out, run_id_for(spec, _entry_script_bytes(spec)), spec.output.format)
    with RunLock(fs, out, layout.run_id):
        return _run(spec, fs, layout, fresh, view)


def _repair(spec: JobSpec, fs, out: str, view: JobView) -> dict:
    """Rerun the failed mini-batches of the job's finished run and merge a new version of its output."""
    run_id, summary = repair_target(fs, out, spec)
    layout = Layout(out, run_id, spec.output.format)
    with RunLock(fs, out, run_id):
        if not prepare_repair(spec, fs, layout, summary):
            assert summary is not None  # a repair cut short always has something to do
            view.nothing_to_repair(run_id)
            return summary.to_dict()
        view.repairing(run_id)
        return _run(spec, fs, layout, False, view)


def _run(spec: JobSpec, fs, layout: Layout, fresh: bool, view: JobView) -> dict:
    """Reuse a finished run, or plan (or resume) it, score every shard and merge."""
    if spec.allow_reuse and not fresh and (reused := reusable(spec, fs, layout)) is not None:
        view.reused(layout.run_id)
        return reused.to_dict()
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
            raise _shard_failure(e, log_dir, view) from e
        plan = _plan(spec, fs, layout, view, at_once)
        for pool in shard_pools[len([s for s in plan.shards if s.count]):]:
            pool.close()  # no work for its shard
        stopped, started = _score(spec, plan, fs, layout, log_dir, scratch, shard_pools, at_once, view)
    with view.status("Merging the output..."):
        try:
            summary = merge(spec, plan, fs, layout, write_final=stopped is None)
        except MergeError as e:  # as a merge pod: not worth retrying (exit 2)
            raise LocalRunError(f"cannot merge: {e}", e.exit_code) from e
    summary.seconds, summary.logs = round(time.monotonic() - started, 2), log_dir
    view.finished(summary)
    if not summary.succeeded:
        raise LocalRunError(f"stopped: {summary.reason or stopped}; details in {summary.errors}",
                            summary=summary.to_dict())
    return summary.to_dict()


def _shards_at_once(workers: int) -> int:
    """How many local shards of `workers` processes each may run at once on this machine."""
    return max(1, PROCESSES_PER_CPU * available_cpus() // workers)


def _plan(spec: JobSpec, fs, layout: Layout, view: JobView, at_once: int) -> Plan:
    """The run's plan: a new one, or an interrupted run's (it resumes)."""
    if fs.exists(layout.plan_header):
        view.resuming(layout.run_id)
    with view.status("Planning: listing the input..."):
        started = time.monotonic()
        plan = ensure_plan(spec, fs, layout)
    workers = process_count(spec)
    view.planned(plan, time.monotonic() - started, workers)
    if spec.node_count * workers > PROCESSES_PER_CPU * available_cpus():
        started_workers = sum(min(workers, s.count) for s in [s for s in plan.shards if s.count][:at_once])
        view.oversubscribed(spec.node_count, workers, available_cpus(), plan, at_once, started_workers)
    return plan


def _score(spec: JobSpec, plan: Plan, fs, layout: Layout, log_dir: str, scratch: str, pools: list[WorkerPool],
           at_once: int, view: JobView) -> tuple[str | None, float]:
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
    report = view.scoring(plan, workers, tally.total, lambda: _resumed(runners))
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
        raise _shard_failure(errors[0], log_dir, view)
    return tally.stop_reason, report.started


def _resumed(runners: list[ShardRunner]) -> Counts:
    """What earlier attempts of the shards had committed."""
    resumed = Counts()
    for r in runners:
        resumed.add(r.resumed)
    return resumed


def _shard_failure(e: BaseException, log_dir: str, view: JobView) -> LocalRunError:
    """A shard's exception as the run's one-line reason and exit code."""
    if isinstance(e, InitError):
        view.init_failed(e.traceback)
        return LocalRunError(f"the scoring script cannot load: {e} (worker logs: {log_dir})", e.exit_code)
    if isinstance(e, PermanentError):  # a missing entry script or model, storage refusing...
        return LocalRunError(str(e), e.exit_code)
    if (fault := storage_error(e)) is not None:
        return LocalRunError(str(fault), fault.exit_code)
    return LocalRunError(f"a shard crashed: {type(e).__name__}: {e}")
