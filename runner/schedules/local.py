"""`parallelrun schedule run`: a schedule's looks (engine.py) in the foreground, its state in the workdir.

The state file `<workdir>/_parallelrun/schedules/<schedule>/state.json` holds what
the operator keeps in status: the memory, the runs and the data watermark. A run is
recorded (Running, and the watermark its files move to) before it starts and once
more when it ends, each time written whole; a restart finds a run still Running and
runs it again under the same name (the pipeline runner resumes it), then decides the
slots after `handledUntil`: no slot is run twice or dropped. Runs here go one after
another, so concurrencyPolicy meets no active run; history limits forget the oldest
records (a run's outputs stay in the workdir). The template's workdir must be a local
folder or a URI this machine can write. A data run that fails gives its files back at the
next look, before its poll, which offers them again (engine.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from ..storage import filesystem, write_atomic
from . import arrival
from .engine import ScheduleEngine, manifest_of
from .policy import Firing, Memory, Run
from .runs import build_run, parse_rfc3339, rfc3339
from .spec import ScheduleSpec

UTC = timezone.utc
IDLE_SECONDS = 60  # the longest sleep between looks

RunPipeline = Callable[[dict, str], str]  # (PipelineRun resource, run name) -> final phase


@dataclass
class State:
    created: datetime
    memory: Memory
    runs: list[Run]
    watermark: arrival.Watermark | None = None

    def to_dict(self) -> dict:
        m = self.memory
        return {"created": rfc3339(self.created),
                "memory": {"handledUntil": m.handled_until and rfc3339(m.handled_until), "generation": m.generation},
                "runs": [{"name": r.name, "trigger": r.trigger, "slot": r.slot and rfc3339(r.slot), "phase": r.phase,
                          "created": r.created and rfc3339(r.created)} for r in self.runs],
                "watermark": self.watermark.to_dict() if self.watermark else None}

    @classmethod
    def from_dict(cls, d: dict) -> State:
        m = d.get("memory") or {}
        created = parse_rfc3339(d["created"])
        assert created is not None  # to_dict writes it
        return cls(created, Memory(parse_rfc3339(m.get("handledUntil")), m.get("generation")),
                   [Run(r["name"], r["trigger"], parse_rfc3339(r.get("slot")), r.get("phase"),
                        parse_rfc3339(r.get("created"))) for r in d.get("runs") or []],
                   arrival.Watermark.from_dict(d.get("watermark")))


class LocalScheduler:
    def __init__(self, spec: ScheduleSpec, run_pipeline: RunPipeline, *, now: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print):
        self.spec, self.run_pipeline, self.log = spec, run_pipeline, log
        self.now = now or (lambda: datetime.now(UTC))
        self.sleep = sleep
        workdir = spec.template["spec"]["workdir"].rstrip("/")
        self.fs, self.state_path = filesystem(f"{workdir}/_parallelrun/schedules/{spec.name}/state.json")
        # The spec's version: a changed file counts slots from now, as a new generation does.
        self.generation = int(hashlib.sha256(json.dumps(spec.raw, sort_keys=True, default=str).encode())
                              .hexdigest()[:12], 16)
        self.engine = ScheduleEngine(self)
        self._stopped: set[str] = set()
        self._started: list[Run] = []

    def load(self) -> State:
        if self.fs.exists(self.state_path):
            return State.from_dict(json.loads(self.fs.cat_file(self.state_path)))
        return State(self.now(), Memory(), [])

    def save(self, state: State) -> None:
        self.fs.makedirs(self.state_path.rsplit("/", 1)[0], exist_ok=True)
        write_atomic(self.fs, self.state_path, json.dumps(state.to_dict(), indent=1).encode())

    def run_forever(self, looks: int | None = None) -> None:
        """Look, run what is due, sleep until the next slot or poll; `looks` bounds it (tests)."""
        while looks is None or looks > 0:
            wake = self.look()
            wait = IDLE_SECONDS if wake is None else min(IDLE_SECONDS, (wake - self.now()).total_seconds())
            if wait > 0:
                self.sleep(wait)
            looks = None if looks is None else looks - 1

    def look(self) -> datetime | None:
        """One look (engine.py); returns when the next is due (None: in IDLE_SECONDS)."""
        state = self.load()
        for run in [r for r in state.runs if r.phase == "Running"]:  # interrupted by a restart: resume it
            self.log(f"resuming {run.name} (interrupted)")
            assert run.slot is not None  # a run made here has its firing's slot
            self._execute(state, Firing(run.name, run.slot, run.trigger))
        now = self.now()
        self._stopped, self._started = set(), []
        look = asyncio.run(self.engine.look(self.spec, now, state.memory, state.runs, state.watermark, state.created,
                                            generation=self.generation))
        state.runs = [r for r in state.runs if r.name not in self._stopped] + self._started
        state.watermark, state.memory = look.watermark, look.decision.memory
        self.save(state)  # the runs exist (Running) before any starts, with the memory past their slots
        for firing in look.started:
            self._execute(state, firing)
        return look.next

    # -- the engine's driver ---------------------------------------------------------

    async def new_files(self, trigger, old: arrival.Watermark) -> list[arrival.Arrived]:
        return arrival.new_files(trigger.uri, trigger.pattern, old)

    async def read_manifest(self, uri: str) -> list[str]:
        return arrival.read_manifest(uri)

    async def write_manifest(self, uri: str, files: list[str]) -> None:
        arrival.write_manifest(uri, files)

    async def start_run(self, firing: Firing, manifest: str | None, watermark: arrival.Watermark | None) -> bool:
        """Recorded Running; it runs once the state that holds it is saved."""
        self._started.append(Run(firing.name, firing.trigger, firing.slot, "Running", self.now()))
        return True

    async def stop_run(self, name: str) -> None:
        self._stopped.add(name)

    def say(self, type_: str, reason: str, message: str) -> None:
        self.log(f"{reason}: {message}")

    def _execute(self, state: State, firing: Firing) -> None:
        manifest = manifest_of(self.spec, firing.name) if firing.trigger == "data" else None
        doc = build_run(self.spec, firing.name, firing.slot, firing.trigger, manifest=manifest)
        self.log(f"starting {firing.name} ({firing.trigger}, scheduled {rfc3339(firing.slot)})")
        try:
            phase = self.run_pipeline(doc, firing.name)
        except Exception as e:  # noqa: BLE001 - the run's own failure; the scheduler goes on
            self.log(f"{firing.name} failed: {e}")
            phase = "Failed"
        self.log(f"{firing.name}: {phase}")
        state.runs = [Run(r.name, r.trigger, r.slot, phase, r.created) if r.name == firing.name else r
                      for r in state.runs]
        self.save(state)  # a failed data run gives its files back at the next look (engine.py)
