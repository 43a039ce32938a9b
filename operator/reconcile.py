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

import abc
import asyncio
import contextlib
import copy
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import kopf

from parallelrun.runner.accounting import ALL_ITEMS_FAILED, Counts, all_items_failed
from parallelrun.runner.contract import PermanentError
from parallelrun.runner.layout import Layout
from parallelrun.runner.plan import shards_with_work
from parallelrun.runner.spec import API_VERSION, KIND, JobSpec, SpecError, load_spec

from . import metrics
from .aggregation import JobState, PodState, observe_merge, observe_scoring
from .job_reuse import find_reusable, record_success, reuse_key
from .kube import ApiError, KubeApi, path
from .manifests import (LABEL_UID, MERGE, PLURAL, SCORING, SPEC, SPEC_FILE, Owner, build_merge_job,
                        build_scoring_job, build_spec_configmap, cluster_errors)
from .planning import Planner, secret_env
from .progress import read_progress
from .status import (FAILED, MERGING, PENDING, PLANNING, RUNNING, SPEC_CHANGE_REFUSED, SUCCEEDED, TERMINAL, counts_of,
                     with_phase, with_progress, with_spec_check, with_warning)

RESYNC_SECONDS = 60  # a look without any event, in case one was missed
PROGRESS_READ_SECONDS = 15  # while scoring: how often the shards' progress files are read
RETRY_SECONDS = 30  # after a passing fault: storage or API unreachable, secret not there yet
_PLURALS = {"ConfigMap": ("v1", "configmaps"), "Job": ("batch/v1", "jobs"), KIND: (API_VERSION, PLURAL)}


class RunFailed(kopf.PermanentError):
    """The run cannot succeed; `reason` becomes the Failed condition's reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Services:
    """What the operator shares between all resources (kept in kopf's memo)."""

    api: KubeApi
    planner: Planner
    default_image: str | None = None


class Wakeups:
    """One event per running resource, set when its pods, Jobs or spec change."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, uid: str) -> asyncio.Event:
        return self._events.setdefault(uid, asyncio.Event())

    def wake(self, uid: str) -> None:
        if uid in self._events:
            self._events[uid].set()

    def forget(self, uid: str) -> None:
        self._events.pop(uid, None)


class Controller(abc.ABC):
    """What every resource's driver does alike: create or adopt children, write status, post Events.

    A subclass names its resource's `plural` and the label (`uid_label`) that marks its children.
    """

    plural = PLURAL
    uid_label = LABEL_UID

    def __init__(self, body, services: Services, logger: logging.LoggerAdapter | None = None):
        self.body = body  # kopf's live view: spec and generation stay current
        self.logger = logger or logging.LoggerAdapter(logging.getLogger(__name__), {})
        self.owner = Owner.of(body)
        self.api, self.services = services.api, services
        self.status = copy.deepcopy(dict(body.get("status") or {}))
        self._written = copy.deepcopy(self.status)
        self._spec_check: tuple[int | None, str | None] | None = None  # (generation, refusal)

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")

    async def drive(self, wake: asyncio.Event) -> None:
        """Take the resource to Succeeded or Failed: `start`, then `step` at every wake-up (or
        `pause` seconds) until it says done; raises kopf.TemporaryError to be retried."""
        try:
            await self.start()
            while True:
                wake.clear()
                started = time.monotonic()
                done = await self.step()
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
                if done:
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.pause())
        except RunFailed as failure:
            await self.fail(failure.reason, str(failure))
        except ApiError as e:
            if not e.permanent:  # unreachable, 429, 5xx...: the same request may pass later
                raise _retry_later(e, "Kubernetes API") from e
            await self.fail(e.failure_reason, e.explain())  # 403, 422...: it would fail the same way again

    @abc.abstractmethod
    async def start(self) -> None:
        """Everything before the first look: the spec, credentials, what must exist first."""

    @abc.abstractmethod
    async def step(self) -> bool:
        """One look at the resource; True when it has finished."""

    def pause(self) -> float:
        return RESYNC_SECONDS

    @abc.abstractmethod
    def _refusal(self) -> str | None:
        """Why the spec as it is now is not run (it changed after the run started), or None."""

    def _check_spec(self, status: dict) -> dict:
        """`status` with SpecChangeRefused set while the spec differs from the run's."""
        if self._spec_check is None or self._spec_check[0] != self.generation:
            self._spec_check = (self.generation, self._refusal())
        refusal = self._spec_check[1]
        if refusal and not any(c.get("type") == SPEC_CHANGE_REFUSED for c in status.get("conditions") or []):
            self._event("Warning", SPEC_CHANGE_REFUSED, refusal)
        return with_spec_check(status, refusal, self.generation)

    async def fail(self, reason: str, message: str) -> None:
        """Failed with `reason`; where the API refuses that status for good, say so in the log and stop."""
        self._event("Warning", reason, message)
        try:
            await self._write(with_phase(self.status, FAILED, reason, message, self.generation))
        except ApiError as e:
            if e.status == 404:  # the resource is gone (its namespace with it?): nobody to tell
                self.logger.warning("the run failed (%s: %s), but the resource is gone", reason, message)
                return
            if not e.permanent:
                raise _retry_later(e, "cannot write the Failed status yet") from e
            refusal = e.explain()
            self.logger.error(
                "the run stopped, and its Failed status cannot be written: the resource will not show it, and "
                "it is not retried. Fix this, then restart the operator: %s%s", refusal,
                "" if refusal == message else f" (it failed with {reason}: {message})")

    async def _credentials(self, storage: dict, wait: bool = True) -> dict[str, str] | None:
        """The storage credentials of `storage`'s secretRef; never the operator's own.

        A missing Secret: wait for it (Pending), or with wait=False, None.
        """
        name = (storage.get("secretRef") or {}).get("name")
        if not name:
            return {}
        try:
            return secret_env(await self.api.get(path("v1", "secrets", self.owner.namespace, name)))
        except ApiError as e:
            if e.status != 404:
                raise
        if not wait:
            return None
        message = f"waiting for Secret {name} (spec.storage.secretRef) to exist; next look in {RETRY_SECONDS}s"
        await self._write(with_phase(self.status, PENDING, "WaitingForSecret", message, self.generation))
        raise kopf.TemporaryError(message, delay=RETRY_SECONDS)

    def _check_ours(self, child: dict) -> None:
        if (child["metadata"].get("labels") or {}).get(self.uid_label) != self.owner.uid:
            raise kopf.TemporaryError(
                f"{child.get('kind', 'object')} {child['metadata']['name']} belongs to another resource "
                "(an earlier one of the same name, still being deleted?); waiting for it to go", delay=RETRY_SECONDS)

    async def _ensure(self, manifest: dict) -> dict:
        """Create `manifest`, or adopt the one of the same name made earlier for this resource."""
        api_version, plural = _PLURALS[manifest["kind"]]
        collection = path(api_version, plural, self.owner.namespace)
        try:
            return await self.api.create(collection, manifest)
        except ApiError as e:
            if e.status != 409:
                raise
        existing = await self.api.get(f"{collection}/{manifest['metadata']['name']}")
        self._check_ours(existing)
        return existing

    async def _write(self, status: dict) -> None:
        self.status = status
        if status == self._written:
            return
        await self.api.merge_patch(path(API_VERSION, self.plural, self.owner.namespace, self.owner.name, "status"),
                                   {"status": status})
        self._written = copy.deepcopy(status)

    def _event(self, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event, and the same in the operator's log (k8s_skip: not posted twice by kopf)."""
        kopf.event(self.body, type=type_, reason=reason, message=message)
        level = logging.INFO if type_ == "Normal" else logging.WARNING
        self.logger.log(level, "%s: %s", reason, message, extra={"k8s_skip": True})


class Reconciler(Controller):
    def __init__(self, body, services: Services, pods: Callable[[], Iterable[PodState]],
                 jobs: Callable[[], Iterable[JobState]], logger: logging.LoggerAdapter | None = None):
        super().__init__(body, services, logger)
        self._pods, self._jobs = pods, jobs
        self.spec: JobSpec | None = None  # the spec of record: the one the run started with
        self.total: int | None = (self.status.get("progress") or {}).get("miniBatches", {}).get("total")
        self._counted = counts_of(self.status)
        self._env: dict[str, str] | None = None  # storage credentials; None: progress files unreadable
        self._live: tuple[float, dict] = (-math.inf, {})  # (when read, shard → Counts) of the progress files

    @property
    def shards_with_work(self) -> int:
        """The scoring pods of the run: one per shard that has work (the plan is known by now)."""
        return shards_with_work(self.total, self.spec.node_count)

    # -- the loop ----------------------------------------------------------------

    def pause(self) -> float:
        """The longest wait before the next look: shorter while scoring, for the progress files."""
        return PROGRESS_READ_SECONDS if self.status.get("phase") == RUNNING else RESYNC_SECONDS

    async def start(self) -> None:
        self.spec = await self._spec_of_record()
        if self.status.get("phase") in (RUNNING, MERGING) and self.total is not None:
            # Resumed: the children exist, the counts come from the pods and progress files.
            self._env = await self._credentials(self.spec.storage, wait=False)
            return
        env = self._env = await self._credentials(self.spec.storage)
        if self.spec.allow_reuse and await self._reuse_earlier_run(env):
            return
        if self.status.get("phase") != PLANNING:
            self._event("Normal", "Planning", f"listing {self.spec.input.source}")
            await self._write(with_phase(self.status, PLANNING, "Planning", f"listing {self.spec.input.source}",
                                         self.generation))
        started = time.monotonic()
        try:
            plan = await self.services.planner.plan(self.spec, self.owner.run_id, env)
        except PermanentError as e:  # nothing to plan, unreadable input, storage refusing: a user's to fix
            raise RunFailed("PlanFailed", str(e)) from e
        except Exception as e:  # storage unreachable...: retried, and said so
            message = f"planning failed, retrying in {RETRY_SECONDS}s: {type(e).__name__}: {e}"
            await self._write(dict(self.status, message=message))
            raise kopf.TemporaryError(message, delay=RETRY_SECONDS) from e
        metrics.PLAN_SECONDS.observe(time.monotonic() - started)
        self.total = plan.total_mini_batches
        await self._ensure(build_spec_configmap(self.spec, self.owner))
        nodes = self.shards_with_work
        job = await self._ensure(build_scoring_job(self.spec, self.owner, self.services.default_image, nodes))
        fewer = (f" (nodeCount {self.spec.node_count}: only {nodes} shard(s) have work)"
                 if nodes < self.spec.node_count else "")
        message = (f"scoring {plan.total_mini_batches} mini-batches on {nodes} node(s){fewer} "
                   f"with Job {job['metadata']['name']}")
        self._event("Normal", "Started", message)
        status = with_phase(self.status, RUNNING, "Scoring", message, self.generation)
        status = with_progress(status, self._counted, self.total, 0, 0, 0, nodes)
        await self._write(dict(status, jobName=job["metadata"]["name"], runId=self.owner.run_id))

    async def step(self) -> bool:
        """One look at the run; True when it has finished."""
        status = self._check_spec(self.status)
        if status.get("phase") in TERMINAL:  # an earlier run reused (allowReuse)
            return True
        if status.get("phase") == RUNNING:
            return await self._score(status)
        if status.get("phase") == MERGING:
            return await self._merge(status)
        raise RuntimeError(f"no step for phase {status.get('phase')!r}")  # start() leaves Running or Merging

    # -- phases ------------------------------------------------------------------

    async def _score(self, status: dict) -> bool:
        pods = list(self._pods())
        scoring = observe_scoring(self.spec, pods, self._job(SCORING), self.total, await self._live_counts(pods))
        metrics.count_progress(self._counted, scoring.counts)
        self._counted = scoring.counts
        status = with_progress(status, scoring.counts, self.total, scoring.active, scoring.succeeded,
                               scoring.failed, self.shards_with_work)
        self.status = status  # what a failure from here on reports
        if scoring.failure:
            await self._stop_scoring()
            raise RunFailed(*scoring.failure)
        if scoring.complete:
            job = await self._ensure(build_merge_job(self.spec, self.owner, self.services.default_image))
            message = f"all {self.shards_with_work} shard(s) done; merging with Job {job['metadata']['name']}"
            self._event("Normal", "Merging", message)
            status = with_phase(status, MERGING, "Merging", message, self.generation)
            status["mergeJobName"] = job["metadata"]["name"]
        await self._write(status)
        return False

    async def _live_counts(self, pods: list[PodState]) -> dict:
        """The progress files of the shards that have not succeeded, read at most every
        PROGRESS_READ_SECONDS (pod events come far more often); {} where storage fails us."""
        read_at, live = self._live
        if self._env is None or time.monotonic() - read_at < PROGRESS_READ_SECONDS:
            return live
        done = {p.index for p in pods if p.component == SCORING and p.phase == "Succeeded"}
        running = [i for i in range(self.shards_with_work) if i not in done]
        try:
            live = await asyncio.to_thread(read_progress, self.spec, self.owner.run_id, self._env, running)
        except Exception as e:  # noqa: BLE001 - storage is down: the pods' own reports still count
            self.logger.warning("cannot read the shards' progress: %s: %s", type(e).__name__, e)
            live = {}
        self._live = (time.monotonic(), live)
        return live

    async def _merge(self, status: dict) -> bool:
        outcome, message = observe_merge(self._pods(), self._job(MERGE))
        if outcome == FAILED:
            self.status = status
            raise RunFailed("MergeFailed", message)
        if outcome == SUCCEEDED:
            output = output_uri(self.spec, self.owner)
            message = f"output written to {output}"
            self._event("Normal", "Succeeded", message)
            status = dict(with_phase(status, SUCCEEDED, "Succeeded", message, self.generation), outputUri=output)
            if warning := all_items_failed(counts_of(status)):  # thresholds of -1 let it succeed: say so
                self._event("Warning", ALL_ITEMS_FAILED, warning)
                status = with_warning(status, ALL_ITEMS_FAILED, warning, self.generation)
            if self.spec.allow_reuse:
                await self._record_for_reuse(output)
        await self._write(status)
        return outcome == SUCCEEDED

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
            summary = key and await asyncio.to_thread(find_reusable, self.spec, key, env)
        except ApiError:
            raise
        except Exception as e:  # noqa: BLE001 - storage is down: run it rather than wait
            self.logger.warning("allowReuse: cannot look for an earlier run, running this one: %s: %s",
                                type(e).__name__, e)
            return False
        if not summary:
            return False
        message = (f"allowReuse: run {summary['runId']} already succeeded with this spec and code, and its input "
                   f"is unchanged; reusing its output")
        self._event("Normal", "Reused", message)
        status = with_phase(self.status, SUCCEEDED, "Reused", message, self.generation)
        status = with_progress(status, Counts.from_dict(summary), summary["plan"]["miniBatches"], 0, 0, 0, 0)
        output = (summary["output"] or {}).get("uri") or summary["summary"]  # summaryOnly: no output file
        await self._write(dict(status, outputUri=output, runId=summary["runId"]))
        return True

    async def _record_for_reuse(self, output: str) -> None:
        """The reuse index entry of this succeeded run; a storage fault costs only a later reuse."""
        try:
            key = await self._reuse_key(self._env or {})
            if key:
                await asyncio.to_thread(record_success, self.spec, key, self.owner.run_id, self.owner.name, output,
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
        errors = cluster_errors(spec, self.services.default_image)
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

    def _refusal(self) -> str | None:
        try:
            if self._current_spec().fingerprint() == self.spec.fingerprint():
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


def output_uri(spec: JobSpec, owner: Owner) -> str:
    """What status.outputUri points to: the output file, or (summaryOnly) the run's summary.json."""
    uris = Layout.uris(spec, owner.run_id)
    return uris.final_output(spec.output.file_name) if spec.output.action == "appendRow" else uris.summary


def _retry_later(e: ApiError, what: str) -> kopf.TemporaryError:
    """A passing API fault, retried after the server's Retry-After (sooner when it did not answer)."""
    return kopf.TemporaryError(f"{what}: {e}", delay=e.retry_delay(RETRY_SECONDS if e.status else 10))


async def refuse_change_after_finish(body, api: KubeApi, plural: str = PLURAL) -> None:
    """A finished run (a BatchInferenceJob, or a PipelineRun with `plural`) whose spec was edited:
    say that nothing will run again."""
    generation = body["metadata"].get("generation")
    status = dict(body.get("status") or {})
    if generation is None or status.get("observedGeneration") in (None, generation):
        return
    refusal = (f"the run is {status.get('phase')}; a changed spec is not run again. To run it, create a new "
               f"{body.get('kind') or KIND}, or delete and re-create this one")
    kopf.event(body, type="Warning", reason=SPEC_CHANGE_REFUSED, message=refusal)
    owner = Owner.of(body)
    await api.merge_patch(path(API_VERSION, plural, owner.namespace, owner.name, "status"),
                          {"status": with_spec_check(status, refusal, generation)})

