"""Driving one BatchInferenceJob from creation to Succeeded or Failed.

Every step first looks at what exists (the status, the children under their
deterministic names, the pods in kopf's index) and only then acts, so running it
again, after a crash or an operator restart, continues the run instead of starting
another: a second create of a child meets 409 and adopts the one there, the plan is
read back once committed, and the counts are recomputed from the pods.

    start  spec of record → credentials → plan → ConfigMap → scoring Job  (Planning → Running)
    step   Running: pods and progress files → counts → thresholds → merge Job once every shard succeeded
           Merging: merge pod → Succeeded, or Failed with its reason
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import kopf

from parallelrun.runner.accounting import ALL_ITEMS_FAILED, all_items_failed
from parallelrun.runner.api import BATCH_INFERENCE_JOB, LABEL_JOB_UID
from parallelrun.runner.contract import EXIT_THRESHOLD, PermanentError
from parallelrun.runner.layout import Layout
from parallelrun.runner.planning import shards_with_work
from parallelrun.runner.spec import API_VERSION, KIND, JobSpec, SpecError, load_spec
from parallelrun.runner.storage import storage_error

from ..kit import metrics
from ..kit.conditions import (
    FAILED,
    MERGING,
    PLANNING,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    condition_true,
    now,
    set_condition,
    with_phase,
    with_warning,
)
from ..kit.controller import Controller, RunFailed, Services
from ..kit.kube import ApiError, path
from ..kit.observe import POD_REPORT_SECONDS, JobState, PodState
from .aggregation import observe_merge, observe_scoring
from .manifests import (
    MERGE,
    SCORING,
    SPEC,
    SPEC_FILE,
    build_merge_job,
    build_scoring_job,
    build_spec_configmap,
    cluster_errors,
    run_id,
)
from .planning import Planner
from .progress import read_progress
from .reuse import find_reusable, record_success, reuse_key
from .status import counts_of, with_progress, with_throughput

PROGRESS_READ_SECONDS = 15  # while scoring: how often the shards' progress files are read


class Reconciler(Controller):
    kind = BATCH_INFERENCE_JOB
    uid_label = LABEL_JOB_UID

    def __init__(self, body, services: Services, planner: Planner, pods: Callable[[], Iterable[PodState]],
                 jobs: Callable[[], Iterable[JobState]], logger: logging.LoggerAdapter | logging.Logger | None = None):
        super().__init__(body, services, logger)
        self.planner = planner
        self._pods, self._jobs = pods, jobs
        self._spec: JobSpec | None = None  # the spec of record: the one the run started with
        self.total: int | None = (self.status.get("progress") or {}).get("miniBatches", {}).get("total")
        self._counted = counts_of(self.status)
        self._env: dict[str, str] | None = None  # storage credentials; None: progress files unreadable
        self._live: tuple[float, dict] = (-math.inf, {})  # (when read, index → ShardProgress) of the progress files
        self._reports_due: float | None = None  # until when the failed indexes' pods are awaited
        # The run it drives: its own (run_id), or the earlier run it repairs (spec.retryFailed).
        self.run_id: str = self.status.get("runId") or run_id(self.owner)

    @property
    def spec(self) -> JobSpec:
        """The spec of record: the one the run started with (start() reads it first)."""
        assert self._spec is not None, "start() sets the spec of record"
        return self._spec

    @property
    def shards_with_work(self) -> int:
        """The scoring pods of the run: the scoring Job's completions once it exists (nodeCount may
        change), else one per shard that has work (the plan is known by now)."""
        assert self.total is not None, "the plan is known by now"
        job = self._job(SCORING)
        return job.completions if job and job.completions else shards_with_work(self.total, self.spec.node_count)

    # -- the loop ----------------------------------------------------------------

    def next_look(self) -> datetime | None:
        """Sooner while scoring, for the progress files; soon while a failed index's pod is awaited."""
        if self._reports_due is not None:
            return self.clock.now() + timedelta(seconds=1)
        if self.status.get("phase") == RUNNING:
            return self.clock.now() + timedelta(seconds=PROGRESS_READ_SECONDS)
        return None

    async def start(self) -> None:
        self._spec = await self._spec_of_record()
        if self.status.get("phase") in (QUEUED, RUNNING, MERGING) and self.total is not None:
            # Resumed: the children exist, the counts come from the pods and progress files.
            self._env = await self._credentials(self.spec.storage, wait=False)
            return
        env = self._env = await self._credentials(self.spec.storage)
        if self.spec.retry_failed:
            action, what = "Repairing", f"the failed mini-batches of the latest finished run of {self.owner.name}"
        elif self.spec.allow_reuse and await self._reuse_earlier_run(env):
            return
        else:
            action, what = "Planning", f"listing {self.spec.input.source}"
        if self.status.get("phase") != PLANNING:
            self._event("Normal", action, what)
            await self._write(with_phase(self.status, PLANNING, action, what, self.generation))
        started = time.monotonic()
        failed = "RepairFailed" if self.spec.retry_failed else "PlanFailed"
        try:
            total = await (self._repair(env) if self.spec.retry_failed else self._plan(env))
        except PermanentError as e:  # nothing to plan, unreadable input, storage refusing: a user's to fix
            raise RunFailed(failed, str(e)) from e
        except Exception as e:  # storage refusing (a wrong key) fails; storage unreachable...: retried, and said so
            fault = storage_error(e)
            if isinstance(fault, PermanentError):
                raise RunFailed(failed, str(fault)) from e
            message = (f"{action.lower()} failed, retrying in {self.retry_seconds}s: "
                       f"{fault or f'{type(e).__name__}: {e}'}")
            await self._write(dict(self.status, message=message))
            raise kopf.TemporaryError(message, delay=self.retry_seconds) from e
        if total is None:
            return
        metrics.PLAN_SECONDS.observe(time.monotonic() - started)
        self.total = total
        await self._ensure(build_spec_configmap(self.spec, self.owner))
        nodes = self.shards_with_work
        job = await self._ensure(build_scoring_job(self.spec, self.owner, self.services.default_image, nodes,
                                                   self.run_id))
        fewer = (f" (nodeCount {self.spec.node_count}: only {nodes} shard(s) have work)"
                 if nodes < self.spec.node_count else "")
        what = f"repairing run {self.run_id}: " if self.spec.retry_failed else ""
        message = (f"{what}scoring {total} mini-batches on {nodes} node(s){fewer} "
                   f"with Job {job['metadata']['name']}")
        self._event("Normal", "Started", message)
        status = with_phase(self.status, QUEUED if self.spec.queue_name else RUNNING,
                            "Queued" if self.spec.queue_name else "Scoring", message, self.generation)
        status = with_progress(status, self._counted, self.total, 0, 0, 0, nodes)
        await self._write(dict(status, jobName=job["metadata"]["name"], runId=self.run_id))

    async def _plan(self, env: dict[str, str]) -> int:
        """The run's plan, written now or read back; its mini-batches."""
        plan = await self.planner.plan(self.spec, self.run_id, env)
        return plan.total_mini_batches

    async def _repair(self, env: dict[str, str]) -> int | None:
        """spec.retryFailed: the job's latest finished run, made ready for its failed mini-batches
        to run again with the code and model as they are now (runner/repair.py); this resource
        drives that run from here on. Its mini-batches, or None when it has no failed item
        (Succeeded at once, with its counts)."""
        repair = await self.planner.repair(self.spec, env)
        self.run_id = repair.run_id
        if repair.summary is None:
            return repair.total
        summary = repair.summary
        message = f"run {repair.run_id} has no failed item: nothing to repair"
        self._event("Normal", "Succeeded", message)
        status = with_phase(self.status, SUCCEEDED, "NothingToRepair", message, self.generation)
        status = with_progress(status, summary.counts, summary.plan_mini_batches, 0, 0, 0, 0)
        await self._write(dict(status, outputUri=summary.output_or_summary, runId=repair.run_id))
        return None

    async def step(self) -> bool:
        """One look at the run; True when it has finished."""
        status = self._check_spec(self.status)
        if status.get("phase") in TERMINAL:  # an earlier run reused (allowReuse)
            return True
        if status.get("phase") in (QUEUED, RUNNING):
            return await self._score(status)
        if status.get("phase") == MERGING:
            return await self._merge(status)
        raise RuntimeError(f"no step for phase {status.get('phase')!r}")  # start() leaves Running or Merging

    # -- phases ------------------------------------------------------------------

    async def _score(self, status: dict) -> bool:
        pods = list(self._pods())
        assert self.total is not None, "start() planned the run, or found it planned"
        queued = self._queued(SCORING, pods)
        if queued is not None or (status.get("phase") == QUEUED and self._job(SCORING) is None):
            if queued is not None:  # else its Job is not observed yet
                await self._write(queued if status.get("phase") == QUEUED else
                                  with_phase(queued, QUEUED, "Queued", queued["message"], self.generation))
            return False
        scale = await self._scale()
        if status.get("phase") == QUEUED:  # Kueue admitted it
            metrics.QUEUE_SECONDS.observe(self._queued_seconds(status))
            status = self._admitted(with_phase(status, RUNNING, "Scoring", "admitted by Kueue; scoring",
                                               self.generation))
        scoring = observe_scoring(self.spec, pods, self._job(SCORING), self.total, await self._live_counts())
        metrics.count_progress(self._counted, scoring.counts)
        self._counted = scoring.counts
        status = with_progress(status, scoring.counts, self.total, scoring.active, scoring.succeeded,
                               scoring.failed, self.shards_with_work)
        status = with_throughput(status, self.clock.now())
        status["nodes"].update(scale)
        self.status = status  # what a failure from here on reports
        if scoring.failure and not self._awaiting_reports(scoring):
            await self._stop_scoring()
            raise RunFailed(*scoring.failure)
        if scoring.complete:
            job = await self._ensure(build_merge_job(self.spec, self.owner, self.services.default_image, self.run_id))
            message = f"all {self.shards_with_work} shard(s) done; merging with Job {job['metadata']['name']}"
            self._event("Normal", "Merging", message)
            status = with_phase(status, MERGING, "Merging", message, self.generation)
            status["mergeJobName"] = job["metadata"]["name"]
        await self._write(status)
        return False

    def _awaiting_reports(self, scoring) -> bool:
        """Whether to wait for the failed pods, when the Job's failure is all that is known: the Job
        and its pods are watched apart, so its condition may come first, and the pods' exit codes
        and reports say why (a threshold, a configuration error, retries spent), which the Job's
        condition does not. At most POD_REPORT_SECONDS, then the Job's word stands."""
        if scoring.failure is None or scoring.failure[0] != "ScoringJobFailed":
            self._reports_due = None
            return False
        if self._reports_due is None:
            self._reports_due = time.monotonic() + POD_REPORT_SECONDS
        return time.monotonic() < self._reports_due

    async def _scale(self) -> dict:
        """Apply a change of spec.nodeCount to the running scoring Job: its completions and
        parallelism patched together (an elastic Indexed Job). New pods claim work as they
        start; removed ones give back what they had not begun, and the rest of theirs is taken
        over once their heartbeats stop. Returns the current and desired pod counts."""
        job = self._job(SCORING)
        try:
            desired = self._node_count() or self.spec.node_count
        except RunFailed:  # an invalid spec is refused (SpecChangeRefused); the run goes on as it is
            desired = self.spec.node_count
        nodes = min(desired, self.total) if self.total else desired
        if job is None or job.completions is None:
            return {}
        if job.completions != nodes and not job.finished:
            await self.api.merge_patch(path("batch/v1", "jobs", self.owner.namespace, job.name),
                                       {"spec": {"completions": nodes, "parallelism": nodes}})
            self._event("Normal", "Scaled", f"scoring Job {job.name}: {job.completions} → {nodes} pod(s) "
                                            f"(spec.nodeCount {desired})")
        return {"current": job.completions, "desired": nodes}

    def _queued(self, component: str, pods: list[PodState]) -> dict | None:
        """The status while `component`'s Job waits, suspended, for Kueue to admit it (None: it
        does not). The operator only ever suspends a Job to stop it; it never unsuspends one."""
        job = self._job(component)
        if not self.spec.queue_name or job is None or not job.suspended or job.finished \
                or any(p.component == component for p in pods):
            return None
        message = f"Job {job.name} waits for Kueue to admit it (LocalQueue {self.spec.queue_name})"
        conditions = set_condition(list(self.status.get("conditions") or []), QUEUED, True, "WaitingForAdmission",
                                   message, self.generation, now())
        return dict(self.status, conditions=conditions, message=message)

    def _queued_seconds(self, status: dict) -> float:
        """How long the run has been Queued: since its Queued condition (else its start) until now."""
        queued = next((c for c in status.get("conditions") or [] if c.get("type") == QUEUED), None)
        since = (queued or {}).get("lastTransitionTime") or status.get("startTime")
        if not since:
            return 0.0
        return max(0.0, (self.clock.now() - datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds())

    def _admitted(self, status: dict) -> dict:
        return dict(status, conditions=set_condition(list(status.get("conditions") or []), QUEUED, False, "Admitted",
                                                     f"admitted from LocalQueue {self.spec.queue_name}",
                                                     self.generation, now()))

    async def _live_counts(self) -> dict:
        """The pods' progress files, read at most every PROGRESS_READ_SECONDS (pod events come far
        more often); {} where storage fails us."""
        read_at, live = self._live
        if self._env is None or time.monotonic() - read_at < PROGRESS_READ_SECONDS:
            return live
        try:
            live = await asyncio.to_thread(read_progress, self.spec, self.run_id, self._env)
        except Exception as e:  # noqa: BLE001 - storage is down: the pods' own reports still count
            self.logger.warning("cannot read the shards' progress: %s: %s", type(e).__name__, e)
            live = {}
        self._live = (time.monotonic(), live)
        return live

    async def _merge(self, status: dict) -> bool:
        queued = self._queued(MERGE, list(self._pods()))
        if queued is not None:
            await self._write(queued)
            return False
        if condition_true(status, QUEUED):  # Kueue admitted the merge Job
            status = self._admitted(status)
        outcome, message = observe_merge(self._pods(), self._job(MERGE))
        if outcome == FAILED:
            merged = any(p.component == MERGE and p.exit_code == EXIT_THRESHOLD for p in self._pods())
            self.status = dict(status, report=self._report_uri()) if merged else status  # it wrote its page
            raise RunFailed("MergeFailed", message)
        if outcome == SUCCEEDED:
            output = output_uri(self.spec, self.run_id)
            message = f"output written to {output}"
            self._event("Normal", "Succeeded", message)
            status = dict(with_phase(status, SUCCEEDED, "Succeeded", message, self.generation), outputUri=output,
                          report=self._report_uri())
            if warning := all_items_failed(counts_of(status)):  # thresholds of -1 let it succeed: say so
                self._event("Warning", ALL_ITEMS_FAILED, warning)
                status = with_warning(status, ALL_ITEMS_FAILED, warning, self.generation)
            if self.spec.allow_reuse:
                await self._record_for_reuse(output)
        await self._write(status)
        return outcome == SUCCEEDED

    def _report_uri(self) -> str:
        """The page the merge pod writes (runner/reportpage.py)."""
        return Layout.uris(self.spec, run_id(self.owner)).report_page

    # -- allowReuse ----------------------------------------------------------------

    async def _reuse_key(self, env: dict[str, str]) -> str | None:
        """The spec's and code's fingerprint (job_reuse.reuse_key); None when the code's ConfigMap is missing."""
        code = None
        if self.spec.code.config_map:
            try:
                found = await self.api.get(path("v1", "configmaps", self.owner.namespace, self.spec.code.config_map))
            except ApiError as e:
                if e.status != 404:
                    raise
                return None
            code = found.get("data") or {}
        return await asyncio.to_thread(reuse_key, self.spec, code, env)

    async def _reuse_earlier_run(self, env: dict[str, str]) -> bool:
        """allowReuse: Succeeded at once with the output of an earlier run of the same spec and code."""
        try:
            key = await self._reuse_key(env)
            summary = await asyncio.to_thread(find_reusable, self.spec, key, env) if key else None
        except ApiError:
            raise
        except Exception as e:  # noqa: BLE001 - storage is down: run it rather than wait
            self.logger.warning("allowReuse: cannot look for an earlier run, running this one: %s: %s",
                                type(e).__name__, e)
            return False
        if not summary:
            return False
        message = (f"allowReuse: run {summary.run_id} already succeeded with this spec and code, and its input "
                   f"is unchanged; reusing its output")
        self._event("Normal", "Reused", message)
        status = with_phase(self.status, SUCCEEDED, "Reused", message, self.generation)
        status = with_progress(status, summary.counts, summary.plan_mini_batches, 0, 0, 0, 0)
        await self._write(dict(status, outputUri=summary.output_or_summary, runId=summary.run_id))
        return True

    async def _record_for_reuse(self, output: str) -> None:
        """The reuse index entry of this succeeded run; a storage fault costs only a later reuse."""
        try:
            key = await self._reuse_key(self._env or {})
            if key:
                await asyncio.to_thread(record_success, self.spec, key, self.run_id, self.owner.name, output,
                                        self._env or {})
        except Exception as e:  # noqa: BLE001
            self.logger.warning("allowReuse: cannot record this run for reuse: %s: %s", type(e).__name__, e)

    # -- the spec ----------------------------------------------------------------

    def _current_spec(self) -> JobSpec:
        """The resource's spec as it is now, validated; a user's mistake fails the run."""
        document = {"apiVersion": API_VERSION, "kind": KIND,
                    "metadata": {"name": self.owner.name, "namespace": self.owner.namespace},
                    "spec": copy.deepcopy(dict(self.body.get("spec") or {}))}
        try:
            spec = load_spec(document)
        except SpecError as e:
            raise RunFailed("InvalidSpec", "\n".join(e.errors)) from e
        errors = cluster_errors(spec, self.services.default_image, self.services.local_storage)
        if errors:
            raise RunFailed("InvalidSpec", "\n".join(errors))
        return spec

    async def _spec_of_record(self) -> JobSpec:
        """The spec in the run's ConfigMap once it exists (what the pods run), else the current one."""
        try:
            configmap = await self.api.get(path("v1", "configmaps", self.owner.namespace, self.owner.child_name(SPEC)))
        except ApiError as e:
            if e.status != 404:
                raise
            return self._current_spec()
        self._check_ours(configmap)
        return load_spec(json.loads(configmap["data"][SPEC_FILE]))

    def _node_count(self) -> int | None:
        """The resource's nodeCount when nothing else of its spec differs from the run's (it may
        change while the run goes on: _scale); None when more changed."""
        current = self._current_spec()
        same = dataclasses.replace(current, node_count=self.spec.node_count).fingerprint() == self.spec.fingerprint()
        return current.node_count if same else None

    def _refusal(self) -> str | None:
        try:
            if self._node_count() is not None:
                return None
            problem = ""
        except RunFailed as e:
            problem = f" (and the new spec is invalid: {e})"
        return (f"the spec changed after the run started{problem}; the run goes on with the spec it started "
                f"with (ConfigMap {self.owner.child_name(SPEC)}). To run the new spec, create a new "
                f"BatchInferenceJob, or delete and re-create this one")

    # -- children and status ------------------------------------------------------

    def _job(self, component: str) -> JobState | None:
        return next((j for j in self._jobs() if j.component == component), None)

    async def _stop_scoring(self) -> None:
        """Suspend the scoring Job: its running pods are deleted, none is started again."""
        job = self._job(SCORING)
        if job is not None and (job.finished or job.suspended):
            return
        try:
            await self.api.merge_patch(path("batch/v1", "jobs", self.owner.namespace, self.owner.child_name("score")),
                                       {"spec": {"suspend": True}})
        except ApiError as e:
            if e.status not in (404, 422):  # gone, or finished meanwhile
                raise


def output_uri(spec: JobSpec, run: str) -> str:
    """What status.outputUri points to: the output file, or (summaryOnly) the run's summary.json."""
    uris = Layout.uris(spec, run)
    return uris.final_output(spec.output.file_name) if spec.output.action == "appendRow" else uris.summary
