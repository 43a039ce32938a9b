"""Local mode for pipelines: `parallelrun run pipeline.yaml` runs a PipelineRun's DAG on this machine.

The driver asks `dag.advance` what to do, and does it: a step to start begins its life
(lifecycle.begin: resolved, reused when the reuse index has a success with the same
fingerprint whose outputs are still there and still its own, else its outputs claimed),
then runs as a process of its own on a thread of its own, so independent steps run side by side.
How each kind runs:

- a batchInference step (or a `type: parallel` component) as a BatchInferenceJob in
  local mode: `python -m parallelrun.cli run <job.yaml>` (it resumes what a failed or
  interrupted attempt committed; its own runMaxTry retries mini-batches);
- a container step as its command, as its Job runs it on the cluster; a component step
  as `python -m parallelrun.runner.pipelines.steprun --step <step.json>`: what its pod
  runs (`python -m parallelrun.runner step`), the same code without importing the
  scoring modules. Either up to `retries` + 1 times. A Job's image is for the cluster:
  here the step runs in the current environment, with this interpreter's folder
  first on PATH (a step's `python` is the one running parallelrun), in the pipeline
  file's folder (a container step) or a copy of the component's code.

Each step's output goes to `<run.workdir>/_parallelrun/logs/<step>.log` (a temporary
folder when the workdir is remote), beside the files it ran from. After a success the
step's index entry is written (reuse steps). Ctrl-C or SIGTERM stops every running step
(SIGTERM first, SIGKILL for what is left after STOP_SECONDS, processes the steps started
included) and raises KeyboardInterrupt on.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import yaml
from rich.console import Console

from ..api import API_VERSION, BATCH_INFERENCE_JOB
from ..lock import RunLock
from ..processes import ProcessGroup, in_group
from ..records import ReuseEntry, RunResult, RunSummary
from ..runfolders import running_run
from ..storage import filesystem, is_local, storage_error
from . import dag, lifecycle, owners, reuse
from .progress import INTERRUPTED, PipelineView, StepRecord
from .resolve import ResolvedStep
from .sources import ComponentFiles, code_digest
from .spec import PipelineSpec, load_pipeline

STEP_MODULE = "parallelrun.runner.pipelines.steprun"  # `python -m parallelrun.runner step` without the scoring imports
STOP_SECONDS = 10.0  # how long stopped steps may take to end before they are killed
PROGRESS_SECONDS = 2.0  # how often a running batchInference step's run folder is read for its progress


def run_pipeline(doc: dict, *, base_dir: str | None, parameters: Mapping[str, Any] = {}, name: str | None = None,
                 console: Console | None = None, fresh: bool = False) -> str:
    """Run a PipelineRun resource here; returns the run's final phase, Succeeded or Failed.

    `base_dir` is the folder relative paths in `doc` are taken from (the file's);
    `parameters` are values for this run (text is parsed by each parameter's type);
    `name` names the run (default: metadata.name), and with it `${{run.name}}`, the
    run's workdir and so which earlier outputs are found again. `fresh` reuses nothing.
    Raises PipelineSpecError for an invalid pipeline (nothing runs), lock.RunLocked when
    a run of this name is running already (its lock: `<workdir>/_parallelrun/pipeline-<name>.lock`),
    and KeyboardInterrupt (Ctrl-C, or processes.Terminated for SIGTERM) once the running steps are stopped.
    """
    if name is not None:
        doc = {**doc, "metadata": {**(doc.get("metadata") or {}), "name": name}}
    files = ComponentFiles()
    spec = load_pipeline(doc, base_dir=base_dir, parameters=parameters, components=files)
    fs, workdir = filesystem(spec.workdir)
    with RunLock(fs, workdir, f"pipeline-{spec.name}"):  # two runs of one name would write the same places
        return _Run(spec, files, PipelineView(console or Console(stderr=True)), fresh).run()


class _LocalStore:
    """The reuse index and output claims of the pipeline's workdir, as this process reaches them."""

    def __init__(self, fs, workdir: str):
        self.fs, self.workdir = fs, workdir

    def reusable(self, step: ResolvedStep, needs_reused: bool) -> ReuseEntry | None:
        return owners.reusable(self.fs, self.workdir, step, needs_reused)

    def claim(self, outputs: Mapping[str, str], execution: str) -> None:
        owners.claim(self.fs, self.workdir, outputs, execution)

    def write_entry(self, entry: ReuseEntry) -> None:
        reuse.write_entry(self.fs, self.workdir, entry)


class _Run:
    def __init__(self, spec: PipelineSpec, files: ComponentFiles, view: PipelineView, fresh: bool):
        self.spec, self.files, self.view, self.fresh = spec, files, view, fresh
        self.steps = {s.name: s for s in spec.steps + spec.finally_steps}
        self.records = {name: StepRecord(name) for name in self.steps}
        self.store = _LocalStore(filesystem(spec.workdir)[0], spec.workdir)
        fs, path = filesystem(spec.run_workdir)
        self.log_dir = os.path.join(path, "_parallelrun", "logs") if is_local(fs) else \
            tempfile.mkdtemp(prefix="parallelrun-pipeline-")
        os.makedirs(self.log_dir, exist_ok=True)
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.processes: dict[str, subprocess.Popen] = {}
        self.threads: list[threading.Thread] = []
        self.interrupted = False

    @property
    def states(self) -> dict[str, str]:
        return {name: r.state for name, r in self.records.items() if r.state != dag.PENDING}

    def run(self) -> str:
        self.group = ProcessGroup()
        self.view.begin(self.spec.name, self.spec.run_workdir, self.records)
        try:
            self._drive()
        except BaseException as e:
            self.interrupted = isinstance(e, KeyboardInterrupt)
            self._stop()
            raise
        finally:
            self.group.close()
            phase = INTERRUPTED if self.interrupted else dag.phase(self.spec.graph, self.states)
            self.view.end(self.spec.name, phase, self.records, self.log_dir)
        return dag.phase(self.spec.graph, self.states)

    def _drive(self) -> None:
        graph = self.spec.graph
        while True:
            advance = dag.advance(graph, self.states)
            for name in advance.skip:
                self._set(name, dag.SKIPPED, message="a step it needs did not succeed")
            for name in advance.start:
                self._start(name)
            if not any(r.state == dag.RUNNING for r in self.records.values()):
                if advance.start or advance.skip:
                    continue
                return
            try:
                name, state, message = self.events.get(timeout=0.25)
            except queue.Empty:
                pass
            else:
                self._set(name, state, message=message)
                if state == dag.SUCCEEDED:
                    self._remember(name)
            self.view.refresh(self.records)

    # -- one step ----------------------------------------------------------------------

    def _start(self, name: str) -> None:
        step, record = self.steps[name], self.records[name]
        execution = owners.new_execution()
        try:
            outcome = lifecycle.begin(
                self.spec, step, self.store, execution,
                finished={n: r.outputs for n, r in self.records.items() if r.state in dag.GOOD}, states=self.states,
                upstream={n: fp for n, r in self.records.items() if (fp := r.fingerprint) is not None},
                run_status=dag.run_status(self.spec.graph, self.states) if step.is_finally else None,
                component_text=self.files.text(step.component_ref), code_digest=code_digest,
                reuse_allowed=not self.fresh)
        except Exception as error:  # noqa: BLE001 - storage failing its code digest or the index: this step fails
            self._set(name, dag.FAILED, message=_one_line(error))
            return
        if isinstance(outcome, lifecycle.Refused):
            self._set(name, dag.FAILED, message=outcome.message)
            return
        record.resolved = resolved = outcome.step
        if isinstance(outcome, lifecycle.Reused):
            record.outputs, record.reused = dict(outcome.entry.outputs), True
            self._set(name, dag.REUSED, message=f"from run {outcome.entry.run}, {outcome.entry.finished_at}")
            return
        record.outputs, record.execution = dict(resolved.outputs), execution
        record.log = os.path.join(self.log_dir, f"{name}.log")
        argv, attempts = self._command(resolved)
        batch = resolved.kind == "batchInference"
        result = os.path.join(self.log_dir, f"{name}.result.json") if batch else None
        watched = resolved.outputs.get("output") if batch else None
        env = {e["name"]: str(e["value"]) for e in resolved.env if "value" in e}
        self._set(name, dag.RUNNING)
        thread = threading.Thread(target=self._execute, args=(name, argv, attempts, resolved.cwd, env, result, watched),
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def _command(self, resolved: ResolvedStep) -> tuple[list[str], int]:
        """The process that runs the step, and how many attempts it gets."""
        if resolved.kind == "container":  # as its Job runs it: the command itself
            return resolved.render(), resolved.retries + 1
        if resolved.kind == "batchInference":
            path = os.path.join(self.log_dir, f"{resolved.name}.job.yaml")
            job = {"apiVersion": API_VERSION, "kind": BATCH_INFERENCE_JOB.kind,
                   "metadata": {"name": f"{resolved.run}-{resolved.name}"}, "spec": resolved.job}
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump(job, f, sort_keys=False)
            return [sys.executable, "-m", "parallelrun.cli", "run", path, "-o", "json",
                    *(["--fresh"] if self.fresh else [])], 1
        path = os.path.join(self.log_dir, f"{resolved.name}.step.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(resolved.to_dict(), f, indent=1)
        return [sys.executable, "-m", STEP_MODULE, "--step", path], resolved.retries + 1

    def _execute(self, name: str, argv: list[str], attempts: int, cwd: str | None, env: dict[str, str],
                 result: str | None, watched: str | None = None) -> None:
        """On the step's thread: run its process until it succeeds or its attempts are spent.
        `result`: where a batchInference step's `-o json` result goes (its stdout); `watched`: its
        output folder, whose running run is read for its progress meanwhile."""
        log = self.records[name].log
        assert log is not None  # _start set it before starting this thread
        message = ""
        try:
            for attempt in range(1, attempts + 1):
                with open(log, "a", encoding="utf-8") as out:
                    out.write(f"--- attempt {attempt} of {attempts}: {' '.join(argv)}\n")
                    out.flush()
                    with self.lock:
                        if self.stopping.is_set():
                            break
                        stdout = open(result, "w", encoding="utf-8") if result else out  # noqa: SIM115 - the step's
                        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=out,
                                                   cwd=cwd if cwd and os.path.isdir(cwd) else None,
                                                   env={**_environment(), **env},
                                                   **in_group(self.group.pgid))
                        self.processes[name] = process
                    code = self._wait(name, process, watched)
                    with self.lock:
                        del self.processes[name]
                    if result:
                        stdout.close()
                        _ended(self.records[name], result)
                if code == 0:
                    self.events.put((name, dag.SUCCEEDED, ""))
                    return
                last = _last_line(log)
                message = f"exit code {128 - code if code < 0 else code}" + (f": {last}" if last else "")
                if self.stopping.is_set():
                    break
        except Exception as error:  # noqa: BLE001 - the step fails with the reason; the run goes on
            message = f"{type(error).__name__}: {error}"
        self.events.put((name, dag.FAILED, "stopped" if self.stopping.is_set() else message))

    def _wait(self, name: str, process: subprocess.Popen, watched: str | None) -> int:
        """The process's exit code; a batchInference step's progress shown every PROGRESS_SECONDS meanwhile."""
        while True:
            try:
                return process.wait(timeout=PROGRESS_SECONDS if watched else None)
            except subprocess.TimeoutExpired:
                assert watched is not None  # without a timeout wait() does not expire
                try:
                    run = running_run(watched)
                except Exception:  # noqa: BLE001 - storage hiccup, a folder being written: the next look
                    continue
                if run is not None:
                    record = self.records[name]
                    record.done, record.total = run.counts.mini_batches, run.total
                    record.failed_items = run.counts.items_failed
                    self.view.progressed(record)

    def _remember(self, name: str) -> None:
        """After a success: the index entry, so a later run with the same fingerprint reuses it."""
        record = self.records[name]
        assert record.resolved is not None  # it ran: _start resolved it
        try:
            lifecycle.remember(self.store, self.steps[name], record.resolved.fingerprint, record.outputs,
                               record.resolved.run, record.execution, datetime.now(timezone.utc))
        except Exception as error:  # noqa: BLE001 - the step succeeded; only a later reuse is lost
            self.view.warn(f"cannot write the reuse index entry of {name}: {_one_line(error)}")

    def _set(self, name: str, state: str, message: str = "") -> None:
        record = self.records[name]
        now = time.monotonic()
        if state == dag.RUNNING:
            record.started = now
        elif state in dag.OVER and record.started is not None:
            record.ended = now
        record.state, record.message = state, message
        self.view.changed(record)

    # -- stopping and showing ---------------------------------------------------------

    def _stop(self) -> None:
        """Stop every running step: SIGTERM, then SIGKILL for the whole group after STOP_SECONDS."""
        with self.lock:
            self.stopping.set()
            running = list(self.processes.values())
        for record in self.records.values():
            record.interrupted = self.interrupted and record.state == dag.RUNNING
        for process in running:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_SECONDS
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.group.close()
        for thread in self.threads:
            thread.join()
        while not self.events.empty():
            name, state, message = self.events.get()
            self._set(name, state, message)
        for record in self.records.values():
            if record.state == dag.RUNNING:
                self._set(record.name, dag.FAILED, "stopped")


def _environment() -> dict[str, str]:
    """A step's environment: this one, with this interpreter's folder first on PATH, so that a
    step's `python` is the one running parallelrun (its virtualenv, without activating it)."""
    path = os.pathsep.join(p for p in (os.path.dirname(sys.executable), os.environ.get("PATH")) if p)
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}


def _one_line(error: Exception) -> str:
    fault = storage_error(error)
    return str(fault) if fault is not None else f"{type(error).__name__}: {error}"


def _last_line(path: str) -> str:
    """The last line a step wrote (its one-line reason, usually)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines and not lines[-1].startswith("--- attempt") else ""


def _ended(record: StepRecord, result: str) -> None:
    """A batchInference step's counts from its `parallelrun run -o json` result, and where its errors are."""
    summary = _summary(result)
    if summary is None:
        record.failed_items = record.errors = None
        return
    record.failed_items = summary.counts.items_failed
    record.done, record.total = summary.counts.mini_batches, summary.plan_mini_batches
    record.errors = summary.errors if record.failed_items else None


def _summary(path: str) -> RunSummary | None:
    """The run's summary in a batchInference step's `parallelrun run -o json` result; None where it ended
    before it had one."""
    try:
        with open(path, encoding="utf-8") as f:
            return RunResult.from_dict(json.load(f)).summary
    except (OSError, ValueError):
        return None
