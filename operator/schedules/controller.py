"""The PipelineSchedule controller: a kit controller per schedule over the runner's look.

Each look: load the spec (invalid: the InvalidSchedule condition, and wait for a new
one), then one look of the runner's schedule engine (runner/schedules/engine.py: failed
data runs give their files back, the data trigger is polled when due, the policy engine
decides, runs are stopped and started), which this controller drives through the API:
it lists and writes the trigger's files off the event loop, creates and deletes runs,
posts Events. Then (once no create of the operator is under way: `CreatesFirst`) it sets
the status, the memory included. Its writer posts the Events and persists the status
behind it (`StatusWriter`): only the latest status, never blocking the next slot. Runs
are created before the memory moves, and a slot's run has one name, so a restart or a
second replica in between meets 409 and adopts the run: never two runs for one slot. A
data-arrival run carries the watermark it moves to (an annotation), so adopting it
moves the watermark as far as its own files reached.

Then it sleeps until the next slot or poll, or until woken: a change of the schedule
(spec, run-now annotation) or of one of its runs. The clock is injectable (kit.clock).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import kopf

from parallelrun.runner.api import (
    ANNOTATION_RUN_NOW,
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_WATERMARK,
    API_VERSION,
    FINALIZER,
    LABEL_SCHEDULE,
    LABEL_TRIGGER,
    PIPELINE_RUN,
    PIPELINE_SCHEDULE,
)
from parallelrun.runner.schedules import arrival
from parallelrun.runner.schedules.engine import ScheduleEngine
from parallelrun.runner.schedules.policy import Firing, Memory, Run
from parallelrun.runner.schedules.runs import build_run, parse_rfc3339, rfc3339
from parallelrun.runner.schedules.spec import ScheduleSpec, ScheduleSpecError, load_schedule

from ..kit import metrics
from ..kit.children import Owner
from ..kit.clock import Clock
from ..kit.controller import Controller, Services
from ..kit.creates import CreatesFirst
from ..kit.credentials import secret_env
from ..kit.kube import ApiError, KubeApi, path
from ..kit.shared_storage import uri_problem
from .status import invalid_status, schedule_status

RETRY_SECONDS = 10  # after a passing fault
_RECENT_SECONDS = 60  # how long a run this loop created or deleted outweighs the index that has not seen it


def cluster_checked(spec: ScheduleSpec, local_storage: bool) -> ScheduleSpec:
    """`spec`, unless it names storage the operator cannot share with the pods: it lists the
    data trigger's uri and writes manifests under the template's workdir itself."""
    uris = {"spec.trigger.dataArrival.uri": spec.trigger.uri if spec.trigger else None,
            "spec.template.spec.workdir": spec.template["spec"].get("workdir")}
    errors = [problem for field, uri in uris.items()
              if (problem := uri_problem(field, uri, operator_reads=True, local_storage=local_storage))]
    if errors:
        raise ScheduleSpecError(errors)
    return spec


def run_of(body: Mapping) -> Run:
    """A PipelineRun as the policy engine sees it (what the index keeps)."""
    meta = body.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return Run(meta["name"], labels.get(LABEL_TRIGGER, "schedule"),
               parse_rfc3339(annotations.get(ANNOTATION_SCHEDULED_TIME)), (body.get("status") or {}).get("phase"),
               parse_rfc3339(meta.get("creationTimestamp")))


def owner_uid(body: Mapping) -> str | None:
    """The uid of the PipelineSchedule owning a run, if one does."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == PIPELINE_SCHEDULE.kind:
            return ref.get("uid")
    return None


@dataclass
class _Recent:
    """Runs this loop created or deleted lately, which the index may not show yet."""

    created: dict[str, tuple[Run, float]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)

    def merge(self, indexed: Iterable[Run]) -> list[Run]:
        cutoff = time.monotonic() - _RECENT_SECONDS
        self.created = {n: v for n, v in self.created.items() if v[1] > cutoff}
        self.deleted = {n: t for n, t in self.deleted.items() if t > cutoff}
        runs = {r.name: r for r in indexed if r.name not in self.deleted}
        for name, (run, _) in self.created.items():
            runs.setdefault(name, run)
        return list(runs.values())


class ScheduleController(Controller):
    """A schedule's controller: it never finishes; each look says when the next is due."""

    kind = PIPELINE_SCHEDULE
    uid_label = LABEL_SCHEDULE
    retry_seconds = RETRY_SECONDS

    def __init__(self, body, services: Services, creates: CreatesFirst, runs: Callable[[], Iterable[Run]],
                 clock: Clock, logger: logging.LoggerAdapter | logging.Logger | None = None):
        super().__init__(body, services, logger or logging.getLogger(__name__), clock)
        self.creates, self._runs = creates, runs
        self.namespace, self.name, self.uid = self.owner.namespace, self.owner.name, self.owner.uid
        self.writer = StatusWriter(self.api, path(API_VERSION, PIPELINE_SCHEDULE.plural, self.namespace, self.name,
                                                  "status"), self.status, self.creates, self.logger)
        self.updates: dict = {}  # status fields this look changed besides the decision's (watermark, poll)
        self.recent = _Recent()
        self.engine = ScheduleEngine(self)
        self._spec_now: ScheduleSpec | None = None  # the spec of the look under way
        self._adopted: list[str] = []  # data runs this look adopted (409)
        self._due: datetime | None = None  # the next look, as the last one said
        self._spec: tuple[int | None, ScheduleSpec] | None = None  # the spec loaded for a generation
        self._writing: asyncio.Task | None = None

    @property
    def meta(self) -> Mapping:
        return self.body["metadata"]

    def _load(self, generation: int | None) -> ScheduleSpec:
        if self._spec is None or self._spec[0] != generation:
            doc = copy.deepcopy({"apiVersion": self.body.get("apiVersion"), "kind": self.body.get("kind"),
                                 "metadata": dict(self.meta), "spec": self.body.get("spec")})
            self._spec = (generation, cluster_checked(load_schedule(doc), self.services.local_storage))
        return self._spec[1]

    async def start(self) -> None:
        self._writing = asyncio.create_task(self.writer.run())

    async def stop(self) -> None:
        if self._writing is not None:
            self._writing.cancel()

    async def step(self) -> bool:
        """One look; an API fault is said and the next look comes after `retry_seconds`."""
        try:
            self._due = await self.look()
        except ApiError as e:
            if e.permanent:
                self._event("Warning", "Failed", e.explain())
            self.logger.warning(f"{e}; next look in {self.retry_seconds}s")
            self._due = self.clock.now() + timedelta(seconds=self.retry_seconds)
        return False

    def next_look(self) -> datetime | None:
        return self._due

    async def look(self) -> datetime | None:
        """One look (the runner's schedules/engine.py); returns when the next one is due (None: only when woken)."""
        generation = self.meta.get("generation")
        now = self.clock.now()
        try:
            spec = self._load(generation)
        except ScheduleSpecError as e:
            if self.status.get("observedGeneration") != generation or not _invalid(self.status):
                self._event("Warning", "InvalidSchedule", "; ".join(e.errors))
            self._want(invalid_status(self.status, e.errors, generation, now))
            return None
        runs = self.recent.merge(self._runs())
        memory = Memory(parse_rfc3339(self.status.get("handledUntil")), self.status.get("observedGeneration"),
                        self.status.get("runNow"))
        watermark = arrival.Watermark.from_dict(self.status.get("watermark"))
        self._spec_now, self._adopted = spec, []
        look = await self.engine.look(spec, now, memory, runs, watermark,
                                      parse_rfc3339(self.meta.get("creationTimestamp")) or now,
                                      generation=generation,
                                      run_now=(self.meta.get("annotations") or {}).get(ANNOTATION_RUN_NOW),
                                      keep=self._giving_back(runs))
        if look.decision.create:
            await self.creates.wait()  # the rest of the look after the creates of the other schedules' loops
        if look.watermark is not None and look.watermark != watermark:
            self.updates["watermark"] = look.watermark.to_dict()
        adopted = [n for n in look.decision.adopted if look.data is not None and n == look.data.name]
        for name in adopted + self._adopted:  # an adopted data run moved it as far as its own files
            await self._adopt_watermark(name)
        if look.polled is not None:
            self.updates["lastPollTime"] = rfc3339(look.polled)
        if look.decision.missed:
            metrics.SCHEDULE_MISSED.inc(look.decision.missed)
        runs = self.recent.merge(self._runs())
        status = schedule_status(self.status, spec, look.decision, runs, self.clock.now(), generation)
        self.updates, status = {}, {**status, **self.updates}
        self._want(status)
        return look.next

    # -- the engine's driver ---------------------------------------------------------

    @property
    def _look_spec(self) -> ScheduleSpec:
        assert self._spec_now is not None, "the engine calls its driver during a look"
        return self._spec_now

    async def new_files(self, trigger, old: arrival.Watermark) -> list[arrival.Arrived]:
        env = await self._storage_env(self._look_spec)
        return await asyncio.to_thread(arrival.new_files, trigger.uri, trigger.pattern, old, env)

    async def read_manifest(self, uri: str) -> list[str]:
        return await asyncio.to_thread(arrival.read_manifest, uri, await self._storage_env(self._look_spec))

    async def write_manifest(self, uri: str, files: list[str]) -> None:
        await asyncio.to_thread(arrival.write_manifest, uri, files, await self._storage_env(self._look_spec))

    def say(self, type_: str, reason: str, message: str) -> None:
        self._event(type_, reason, message)

    def _giving_back(self, runs: list[Run]) -> set[str]:
        """Failed data runs whose giving back is not written yet: deleting one now could lose its files."""
        written = arrival.Watermark.from_dict(self.writer.written.get("watermark"))
        done = set(written.returned) if written else set()
        return {r.name for r in runs if r.trigger == "data" and r.phase == "Failed" and r.name not in done}

    async def _adopt_watermark(self, name: str) -> None:
        try:
            run = await self.api.get(path(API_VERSION, PIPELINE_RUN.plural, self.namespace, name))
        except ApiError as e:
            if e.status == 404:
                return
            raise
        text = ((run.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_WATERMARK)
        if text:
            mark = arrival.Watermark.from_dict(json.loads(text))
            # start_run wrote it
            assert mark is not None, f"run {name}: its {ANNOTATION_WATERMARK} annotation has no time"
            self.updates["watermark"] = mark.to_dict()

    async def _storage_env(self, spec: ScheduleSpec) -> dict[str, str]:
        """The credentials of the template's spec.storage; a missing Secret is an ApiError, for the
        poll to report (unlike Controller._credentials, which waits for it)."""
        name = ((spec.template["spec"].get("storage") or {}).get("secretRef") or {}).get("name")
        if not name:
            return {}
        return secret_env(await self.api.get(path("v1", "secrets", self.namespace, name)))

    # -- runs, events, status ------------------------------------------------------

    async def start_run(self, firing: Firing, manifest: str | None, watermark: arrival.Watermark | None) -> bool:
        """Create the run of a firing, or adopt it (409); whether it was created now."""
        spec, data = self._look_spec, firing.trigger == "data"
        owner = Owner(PIPELINE_SCHEDULE, self.name, self.namespace, self.uid).reference()
        body = build_run(spec, firing.name, firing.slot, firing.trigger, manifest=manifest, owner=owner,
                         watermark=watermark.text() if data and watermark else None)
        body["metadata"]["namespace"] = self.namespace
        body["metadata"]["finalizers"] = [FINALIZER]  # kopf adds it to a new run that lacks it: a PATCH per run
        try:
            created = await self.creates.create(path(API_VERSION, PIPELINE_RUN.plural, self.namespace), body)
            adopted = False
        except ApiError as e:
            if e.status != 409:
                raise
            created, adopted = body, True
            if data:
                self._adopted.append(firing.name)
        self.recent.created[firing.name] = (run_of(created), time.monotonic())
        if adopted:
            return False
        metrics.SCHEDULE_RUNS.labels(firing.trigger).inc()
        if firing.trigger == "schedule":
            metrics.SCHEDULE_LAG.observe(max((self.clock.now() - firing.slot).total_seconds(), 0.0))
        what = {"schedule": f"slot {rfc3339(firing.slot)}", "manual": "run-now", "data": f"new files ({manifest})"}
        self._event("Normal", "Started", f"run {firing.name} for {what[firing.trigger]}")
        return True

    async def stop_run(self, name: str) -> None:
        try:
            await self.api.request("DELETE", path(API_VERSION, PIPELINE_RUN.plural, self.namespace, name),
                                   {"propagationPolicy": "Background"})
        except ApiError as e:
            if e.status != 404:
                raise
        self.recent.deleted[name] = time.monotonic()
        self.recent.created.pop(name, None)

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.writer.event(functools.partial(kopf.event, self.body, type=type_, reason=reason, message=message))
        self.logger.log(logging.WARNING if type_ == "Warning" else logging.INFO, message)

    def _want(self, status: dict) -> None:
        """The status from now on (a None removes a field); the writer persists it."""
        self.status = {k: v for k, v in status.items() if v is not None}
        self.writer.want(self.status)


class StatusWriter:
    """Persists a loop's latest status behind it, and posts its Events: waits until no create of
    the operator is under way (`CreatesFirst`), posts the Events, then patches what differs from
    what was written; a failed patch is retried, a newer status replacing the one that failed.
    The loop never waits for it."""

    def __init__(self, api: KubeApi, url_path: str, written: dict, creates: CreatesFirst,
                 logger: logging.LoggerAdapter | logging.Logger):
        self.api, self.url_path, self.creates, self.logger = api, url_path, creates, logger
        self.written, self.wanted = written, written
        self._events: list[Callable[[], None]] = []
        self._dirty = asyncio.Event()

    def event(self, post: Callable[[], None]) -> None:
        self._events.append(post)
        self._dirty.set()

    def want(self, status: dict) -> None:
        self.wanted = status
        if status != self.written:
            self._dirty.set()

    def patch(self) -> dict:
        """What differs from what was written (a None removes a field)."""
        wanted, written = self.wanted, self.written
        return {**{k: v for k, v in wanted.items() if written.get(k) != v},
                **{k: None for k in written if k not in wanted}}

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            await self.creates.wait()
            self._dirty.clear()
            events, self._events = self._events, []
            for post in events:
                post()
            wanted, patch = self.wanted, self.patch()
            try:
                if patch:
                    await self.api.merge_patch(self.url_path, {"status": patch})
                self.written = wanted
            except ApiError as e:
                self.logger.warning(f"{e}; status written again in {RETRY_SECONDS}s")
                self._dirty.set()
                await asyncio.sleep(RETRY_SECONDS)


def _invalid(status: dict) -> bool:
    return any(c.get("type") == "InvalidSchedule" and c.get("status") == "True" for c in status.get("conditions") or [])
