"""One look of a schedule, for both drivers: the local scheduler (`parallelrun schedule run`) and
the operator's controller.

A look hands the files of failed data runs back (each run once), polls the data trigger when
due, lets the policy engine decide, stops the runs it drops and starts the runs it wants, and
says when the next look is due. A driver supplies only how to list, read and write the data
trigger's files, how to start and stop a run, and where to say what happened
(`ScheduleDriver`); it keeps the memory and the watermark the look returns.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from . import arrival
from .policy import Decision, Firing, Memory, Run, decide
from .runs import data_run_name
from .spec import ScheduleSpec


class ScheduleDriver(Protocol):
    async def new_files(self, trigger, old: arrival.Watermark) -> list[arrival.Arrived]:
        """The files under the trigger's uri; raises what the listing raised (the poll fails)."""

    async def read_manifest(self, uri: str) -> list[str]: ...

    async def write_manifest(self, uri: str, files: list[str]) -> None: ...

    async def start_run(self, firing: Firing, manifest: str | None, watermark: arrival.Watermark | None) -> bool:
        """Create the run of `firing` (a data run's `manifest`, the `watermark` it moves to); whether it
        was created now (False: it existed and was adopted)."""

    async def stop_run(self, name: str) -> None: ...

    def say(self, type_: str, reason: str, message: str) -> None:
        """An Event on the cluster, a log line locally."""


@dataclass
class Look:
    """What one look did: the decision, the runs started now, and the watermark from now on."""

    decision: Decision
    started: list[Firing] = field(default_factory=list)
    watermark: arrival.Watermark | None = None
    data: Firing | None = None  # the data firing of this look's poll, started or not
    polled: datetime | None = None  # when the listing of this look's poll succeeded
    next: datetime | None = None  # when the next look is due (None: when woken)


def manifest_of(spec: ScheduleSpec, run: str) -> str:
    """Where data run `run` of `spec` finds the list of its files."""
    return arrival.manifest_uri(spec.template["spec"]["workdir"], spec.name, run)


class ScheduleEngine:
    """A schedule's looks; it remembers when the data trigger is polled next."""

    def __init__(self, driver: ScheduleDriver):
        self.driver = driver
        self.next_poll: datetime | None = None

    async def look(self, spec: ScheduleSpec, now: datetime, memory: Memory, runs: list[Run],
                   watermark: arrival.Watermark | None, created: datetime, *, generation: int | None,
                   run_now: str | None = None, keep: Collection[str] = ()) -> Look:
        """One look at `now`; `keep`: runs the decision may drop but the driver cannot stop yet."""
        mark, data, moved, polled = watermark, None, None, None
        if spec.trigger is not None:
            mark = await self._give_back(spec, runs, watermark or arrival.Watermark(created))
            forced = run_now is not None and run_now != memory.run_now and spec.uses_manifest
            if not spec.suspend and (forced or self.next_poll is None or now >= self.next_poll):
                data, moved, polled = await self._poll(spec, runs, mark, now)
        decision = decide(spec, memory, runs, now, generation=generation, created=created, run_now=run_now, data=data)
        for name in decision.delete:
            if name not in keep:
                await self.driver.stop_run(name)
        started = []
        for firing in decision.create:
            manifest = manifest_of(spec, firing.name) if firing.trigger == "data" else None
            if await self.driver.start_run(firing, manifest, moved if firing.trigger == "data" else None):
                started.append(firing)
        if data is not None and data in started:  # an adopted run moved it as far as its own files
            mark = moved
        for notice in decision.notices:
            self.driver.say(notice.type, notice.reason, notice.message)
        polls = (self.next_poll,) if spec.trigger and not spec.suspend else ()
        due = [t for t in (*decision.upcoming[:1], *polls) if t is not None]
        return Look(decision, started, mark, data, polled, min(due) if due else None)

    async def _give_back(self, spec: ScheduleSpec, runs: list[Run], old: arrival.Watermark) -> arrival.Watermark:
        """The watermark once every failed data run gave its files back to the next data run (each
        once: the watermark names it until the run is gone)."""
        mark = arrival.forget(old, (r.name for r in runs))
        for run in runs:
            if run.trigger == "data" and run.phase == "Failed" and run.name not in mark.returned:
                files = await self.driver.read_manifest(manifest_of(spec, run.name))
                mark = arrival.give_back(mark, run.name, files)
                self.driver.say("Warning", "FilesGivenBack", f"run {run.name} failed: its {len(files)} files go to "
                                                             "the next data run, at the next poll")
        return mark

    async def _poll(self, spec: ScheduleSpec, runs: list[Run], old: arrival.Watermark,
                    now: datetime) -> tuple[Firing | None, arrival.Watermark | None, datetime | None]:
        """New settled files (and those given back) as a firing, the watermark it moves to, and when
        the listing succeeded; no firing when there are none."""
        trigger = spec.trigger
        assert trigger is not None, "look() polls a schedule with a data trigger only"
        self.next_poll = now + timedelta(seconds=trigger.poll_seconds)
        try:
            files = await self.driver.new_files(trigger, old)
        except Exception as e:  # noqa: BLE001 - no Secret yet, storage unreachable or refused, no folder yet
            self.driver.say("Warning", "PollFailed", f"listing {trigger.uri}: {e}")
            return None, None, None
        chosen, moved = arrival.select(files, old, now, trigger.settle_seconds)
        if not chosen:
            return None, None, now
        name = data_run_name(spec.name, old.text())
        if not any(r.name == name for r in runs):
            await self.driver.write_manifest(manifest_of(spec, name), chosen)
        return Firing(name, now, "data"), moved, now
