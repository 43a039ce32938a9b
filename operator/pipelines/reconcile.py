"""Driving one PipelineRun from creation to Succeeded or Failed.

Each look rebuilds the run's state from what exists: the steps status already
records as over, and each step's child (in kopf's indexes); then `dag.advance` says
which steps to skip and which to start. A step begins its life as in local mode
(runner/pipelines/lifecycle.begin: resolved, reused when the reuse index has a success
whose outputs still exist and are still its own, which makes it Succeeded with
`reused: true` and no child, else its output places claimed for this run's execution of
the step); then its children are created under deterministic names (a 409 adopts the
child made before a restart). When a child succeeds its outputs (kept on the child) go
into the reuse index (lifecycle.remember), then into the status, where later steps'
expressions find them. Storage is reached off the event loop.

    start   the spec of record (the ConfigMap <run>-spec once it started; an edit after that is refused),
            every problem → Failed, InvalidSpec, no children; its components, credentials
    step    children → step states → skip / reuse / create → status
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import time
from collections.abc import Callable, Iterable, Mapping

import kopf

from parallelrun.runner.api import LABEL_RUN_UID, PIPELINE_RUN
from parallelrun.runner.contract import PermanentError
from parallelrun.runner.pipelines import dag, lifecycle, owners, reuse
from parallelrun.runner.pipelines.component import Component, load_component_text
from parallelrun.runner.pipelines.resolve import component_base_dir
from parallelrun.runner.pipelines.spec import API_VERSION, KIND, ComponentRef, PipelineSpec, Step, load_pipeline
from parallelrun.runner.spec import SpecError
from parallelrun.runner.storage import StorageUnavailable, filesystem, storage_error

from ..kit.children import child_name
from ..kit.conditions import TERMINAL, now
from ..kit.controller import Controller, RunFailed, Services
from ..kit.kube import ApiError, path
from ..kit.observe import POD_REPORT_SECONDS, PodState
from .manifests import SPEC_FILE, build_spec_configmap, build_step_children, cluster_errors, spec_configmap_name
from .status import OVER, ChildState, failed_pod, skip_message, step_states, with_steps


class _Unavailable(RuntimeError):
    """Storage did not answer while loading a component: retried, not a spec error."""


class PipelineReconciler(Controller):
    kind = PIPELINE_RUN
    uid_label = LABEL_RUN_UID

    def __init__(self, body, services: Services, children: Callable[[], Iterable[ChildState]],
                 pods: Callable[[], Iterable[tuple[str, PodState]]] = tuple, logger=None):
        super().__init__(body, services, logger)
        self._children, self._pods = children, pods
        self._spec: PipelineSpec | None = None  # the spec of record
        self._env: dict[str, str] = {}
        self._component_texts: dict[ComponentRef, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # for API calls from worker threads
        self._document: dict = {}  # the resource as the run started (its spec of record)
        self._pods_due: dict[str, float] = {}  # failed steps whose pod is awaited, until when

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        recorded = await self._spec_of_record()
        self._document = recorded or self._current_document()
        storage = (self._document.get("spec") or {}).get("storage") or {}
        self._env = await self._credentials(storage if isinstance(storage, dict) else {})
        self._spec = await self._load(self._document)
        if recorded is None:
            await self._ensure(build_spec_configmap(self.owner, self._document))

    @property
    def spec(self) -> PipelineSpec:
        """The spec of record: the one the run started with (start() loads it first)."""
        assert self._spec is not None, "start() loads the spec of record"
        return self._spec

    async def step(self) -> bool:
        spec, graph = self.spec, self.spec.graph
        steps = {name: dict(s) for name, s in (self.status.get("steps") or {}).items()}
        for child in self._children():
            await self._observe(child, steps)
        while True:
            states = step_states(steps)
            advance = dag.advance(graph, states)
            if not advance.skip and not advance.start:
                break
            for name in advance.skip:
                steps[name] = {"phase": dag.SKIPPED, "message": skip_message(graph, states, name)}
                self._event("Normal", "StepSkipped", f"step {name} {steps[name]['message']}")
            by_name = {s.name: s for s in spec.steps + spec.finally_steps}
            for name in advance.start:
                steps[name] = await self._start_step(by_name[name], steps, states)
        status = self._check_spec(with_steps(self.status, graph, steps, spec.parameters, self.generation))
        if status.get("phase") in TERMINAL and self.status.get("phase") != status["phase"]:
            kind = "Normal" if status["phase"] == dag.SUCCEEDED else "Warning"
            self._event(kind, status["phase"], status["message"])
        await self._write(status)
        return status.get("phase") in TERMINAL

    # -- the spec ----------------------------------------------------------------

    def _current_document(self) -> dict:
        meta = self.body["metadata"]
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": meta["name"],
                                                                      "namespace": meta["namespace"]},
                "spec": copy.deepcopy(dict(self.body.get("spec") or {}))}

    async def _spec_of_record(self) -> dict | None:
        """The spec the run started with (its ConfigMap), or None before it started."""
        try:
            config_map = await self.api.get(path("v1", "configmaps", self.owner.namespace,
                                                 spec_configmap_name(self.owner)))
        except ApiError as e:
            if e.status != 404:
                raise
            return None
        self._check_ours(config_map)
        return json.loads(config_map["data"][SPEC_FILE])

    def _refusal(self) -> str | None:
        if self._current_document()["spec"] == self._document["spec"]:
            return None
        return (f"the spec changed after the run started; the run goes on with the spec it started with (ConfigMap "
                f"{spec_configmap_name(self.owner)}). To run the new spec, create a new PipelineRun")

    async def _load(self, document: dict) -> PipelineSpec:
        """The run's spec with its components loaded; every problem at once fails the run.

        The spec as written is judged first, so no component is read from where the operator must not read."""
        try:
            self._cluster_check(load_pipeline(document))
            config_maps = await self._component_config_maps(document["spec"])
            spec = await asyncio.to_thread(load_pipeline, document, None, None,
                                           lambda ref: self._component(ref, config_maps))
        except SpecError as e:
            raise RunFailed("InvalidSpec", "\n".join(e.errors)) from e
        except _Unavailable as e:
            raise kopf.TemporaryError(str(e), delay=self.retry_seconds) from e
        return self._cluster_check(spec)

    def _cluster_check(self, spec: PipelineSpec) -> PipelineSpec:
        errors = cluster_errors(spec, self.services.default_image, self.services.local_storage)
        if errors:
            raise RunFailed("InvalidSpec", "\n".join(errors))
        return spec

    async def _component_config_maps(self, spec: dict) -> dict[str, dict | None]:
        """The ConfigMaps component steps name (None: not there), read before the spec is loaded."""
        names = set()
        for step in [*(spec.get("steps") or []), *(spec.get("finally") or [])]:
            ref = step.get("component") if isinstance(step, dict) else None
            if isinstance(ref, dict) and isinstance(ref.get("configMap"), str):
                names.add(ref["configMap"])
        found: dict[str, dict | None] = {}
        for name in sorted(names):
            try:
                found[name] = await self.api.get(path("v1", "configmaps", self.owner.namespace, name))
            except ApiError as e:
                if e.status != 404:
                    raise
                found[name] = None
        return found

    def _component(self, ref: ComponentRef, config_maps: Mapping[str, dict | None]) -> Component:
        """A component step's file, from its ConfigMap or storage (in a worker thread)."""
        if ref.config_map is not None:
            data = (config_maps.get(ref.config_map) or {}).get("data") or {}
            if config_maps.get(ref.config_map) is None:
                raise OSError(f"ConfigMap {ref.config_map} does not exist in namespace {self.owner.namespace}")
            if ref.key not in data:
                raise OSError(f"ConfigMap {ref.config_map} has no key {ref.key}; its keys: {', '.join(data) or 'none'}")
            text = data[ref.key].encode()
        else:
            assert ref.uri is not None  # a component step names a uri or a ConfigMap
            try:
                fs, where = filesystem(ref.uri, self._env)
                text = fs.cat_file(where)
            except Exception as e:  # sorted below: a passing fault is retried
                fault = storage_error(e, ref.uri, writing=False)
                if isinstance(fault, StorageUnavailable):
                    raise _Unavailable(f"cannot read component {ref.uri} yet: {fault}") from e
                raise OSError(str(fault or e)) from e
        self._component_texts[ref] = text
        return load_component_text(text, component_base_dir(ref))

    # -- steps -------------------------------------------------------------------

    async def _observe(self, child: ChildState, steps: dict[str, dict]) -> None:
        """Take what a step's child says into `steps`; a success goes into the reuse index first."""
        current = steps.get(child.step, {})
        if current.get("phase") in OVER or child.step not in self.spec.graph.names:
            return
        update = {"phase": child.phase, "child": child.name, "startTime": current.get("startTime") or now()}
        if child.fingerprint:
            update["fingerprint"] = child.fingerprint
        if child.progress:
            update.update(progress=child.progress, failedItems=child.failed_items)
        if child.phase == dag.SUCCEEDED:
            step = next(s for s in self.spec.steps + self.spec.finally_steps if s.name == child.step)
            finished_at = datetime.datetime.now(datetime.timezone.utc)
            await self._storage(lifecycle.remember, self._store, step, child.fingerprint, child.outputs,
                                self.owner.name, self._execution(child.step), finished_at)
            update.update(outputs=dict(child.outputs), reused=False, completionTime=now())
            self._event("Normal", "StepSucceeded", f"step {child.step} succeeded ({child.name})")
        elif child.phase == dag.FAILED:
            pod = failed_pod(self._pods(), child.step)
            if pod is None and child.has_pods and self._awaiting_pod(child.step):
                return  # the Job's condition came before its pod's: the pod says why
            self._pods_due.pop(child.step, None)
            message = child.message + (f"; {pod.describe()}" if pod else "")
            update.update(message=message, completionTime=now())
            self._event("Warning", "StepFailed", f"step {child.step} failed: {message}")
        else:
            update["message"] = child.message  # why it waits (Kueue's admission), or nothing once it runs
        steps[child.step] = {key: value for key, value in {**current, **update}.items() if key != "message" or value}

    def _awaiting_pod(self, step: str) -> bool:
        """Whether to wait for the failed pod of a step's failed Job: the Job and its pods are watched
        apart, and the pod's exit code and log tail say why. At most POD_REPORT_SECONDS."""
        due = self._pods_due.setdefault(step, time.monotonic() + POD_REPORT_SECONDS)
        return time.monotonic() < due

    def next_look(self) -> datetime.datetime | None:
        """Soon while a failed step's pod is awaited (a pod's change does not wake the run)."""
        return self.clock.now() + datetime.timedelta(seconds=1) if self._pods_due else None

    async def _start_step(self, step: Step, steps: Mapping[str, dict], states: Mapping[str, str]) -> dict:
        """Begin `step` (lifecycle.begin), then create its children unless it was reused; its status entry."""
        started = now()
        try:
            outcome = await self._storage(
                lifecycle.begin, self.spec, step, self._store, self._execution(step.name),
                finished={name: s.get("outputs") or {} for name, s in steps.items() if s.get("phase") == dag.SUCCEEDED},
                states=states, upstream={name: s["fingerprint"] for name, s in steps.items() if s.get("fingerprint")},
                run_status=dag.run_status(self.spec.graph, states) if step.is_finally else None,
                component_text=self._component_texts.get(step.component_ref) if step.component_ref else None,
                code_digest=self._code_digest)
        except (ApiError, kopf.TemporaryError):
            raise
        except Exception as e:  # its code's storage did not answer: the step waits
            message = f"cannot resolve step {step.name} yet, retrying in {self.retry_seconds}s: {type(e).__name__}: {e}"
            raise kopf.TemporaryError(message, delay=self.retry_seconds) from e
        if isinstance(outcome, lifecycle.Refused):
            self._event("Warning", "StepFailed", f"step {step.name} cannot start: {outcome.message}")
            return {"phase": dag.FAILED, "message": outcome.message, "startTime": started, "completionTime": started}
        resolved = outcome.step
        if isinstance(outcome, lifecycle.Reused):
            message = f"reused the outputs of step {outcome.entry.step} of run {outcome.entry.run}"
            self._event("Normal", "StepReused", f"step {step.name}: {message}")
            return {"phase": dag.SUCCEEDED, "reused": True, "outputs": dict(outcome.entry.outputs), "message": message,
                    "fingerprint": resolved.fingerprint, "startTime": started, "completionTime": now()}
        for manifest in build_step_children(self.owner, resolved, self.spec, self.services.default_image):
            await self._ensure(manifest)
        child = child_name(self.owner.name, step.name)
        self._event("Normal", "StepStarted", f"step {step.name} started: {resolved.kind} {child}")
        return {"phase": dag.RUNNING, "child": child, "fingerprint": resolved.fingerprint, "startTime": started}

    @property
    def _store(self) -> _ClusterStore:
        return _ClusterStore(self.spec.workdir, self._env, self.logger)

    def _execution(self, step: str) -> str:
        """This run's execution of `step` (owners.py): the same after a restart, new for every run."""
        return f"{self.owner.uid}.{step}"

    def _code_digest(self, location: str) -> str | None:
        """A digest of a step's code (a folder in storage, or a ConfigMap's data), for its fingerprint."""
        if location.startswith("configMap:"):
            name = location.removeprefix("configMap:")
            assert self._loop is not None  # start() keeps the operator's loop
            try:
                config_map = asyncio.run_coroutine_threadsafe(
                    self.api.get(path("v1", "configmaps", self.owner.namespace, name)), self._loop).result()
            except ApiError as e:
                if e.status != 404:
                    raise
                return None  # the step's BatchInferenceJob will say the code is missing
            return reuse.fingerprint({"data": config_map.get("data") or {}}, None, None)
        fs, where = filesystem(location, self._env)
        return reuse.folder_digest(fs, where) if fs.exists(where) else None  # as local mode (sources.code_digest)

    async def _storage(self, function, *args, **kwargs):
        """`function` (one that reaches the reuse index through self._store) in a worker thread;
        storage that does not answer is waited for: the run is retried, its status unchanged."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except _Unreachable as e:
            message = (f"the reuse index under {self.spec.workdir} is unreachable, retrying in "
                       f"{self.retry_seconds}s: {e}")
            raise kopf.TemporaryError(message, delay=self.retry_seconds) from e


class _Unreachable(Exception):
    """The reuse index's storage does not answer."""


class _ClusterStore:
    """The reuse index and output claims under the run's workdir, with the run's credentials.

    Storage that refuses (no access to the workdir) costs only reuse: a warning, and no
    entry found, claimed or written. Storage that does not answer raises _Unreachable."""

    def __init__(self, workdir: str, env: Mapping[str, str], logger):
        self.workdir, self.env, self.logger = workdir, env, logger

    def reusable(self, step, needs_reused: bool):
        return self._call(owners.reusable, step, needs_reused, self.env)

    def claim(self, outputs: Mapping[str, str], execution: str) -> None:
        self._call(owners.claim, outputs, execution)

    def write_entry(self, entry) -> None:
        self._call(reuse.write_entry, entry)

    def _call(self, function, *args):
        try:
            fs, root = filesystem(self.workdir, self.env)
            return function(fs, root, *args)
        except Exception as e:  # sorted below
            fault = storage_error(e, self.workdir)
            if isinstance(fault, PermanentError):
                self.logger.warning("the reuse index under %s is refused, so steps are neither reused nor recorded "
                                    "for reuse: %s", self.workdir, fault)
                return None
            raise _Unreachable(str(fault or f"{type(e).__name__}: {e}")) from e
