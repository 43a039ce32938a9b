"""The policy engine of a PipelineSchedule: pure, no clock, no I/O.

`decide` is given the spec, what the scheduler remembers (`Memory`: every slot up to
`handled_until` was run, skipped or reported missed; the spec generation that was
seen; the run-now value handled), the schedule's runs as they exist, and `now`. It
answers which runs to create and delete, what to report (`Notice`s become Events),
what to remember next, and the next fire times. The caller creates the runs first
and writes the memory after, so a restart in between decides the same slots again,
under the same names: the create meets 409 and the run is adopted, never doubled.

The rules:

- A new schedule counts slots from its creation; a changed spec (another generation)
  from now: changing a schedule fires nothing by itself. A suspended schedule lets its
  slots pass (`handled_until` moves on) and starts none; run-now still works.
- A slot seen more than `MISSED_AFTER` (or startingDeadlineSeconds, if less) after its
  time was missed (the scheduler was down). missedRuns `RunLatest` runs the latest
  missed slot unless a slot on time supersedes it, `RunAll` up to `maxMissedRuns` of the
  latest, `Skip` none. A slot older than startingDeadlineSeconds never runs. Every
  missed slot is reported and counted, whether it runs late or not at all: each one run
  late in an Event of its own (it has a run too), those dropped the first
  `MISSED_EVENTS` one by one, the rest in one Event with their count and range; nothing
  is dropped silently, whatever the number.
- concurrencyPolicy, counting the active runs and those created in this decision:
  `Allow` starts every run; `Forbid` skips a run while another is active; `Replace`
  deletes the active runs and starts the new one (of several due at once, the last).
  A data-arrival run is held, not skipped, while a run is active (its files wait for
  the next poll, as the watermark has not moved): replacing or skipping it would lose them.
- History: beyond successfulRunsHistoryLimit / failedRunsHistoryLimit, the oldest
  finished runs are deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .runs import rfc3339, run_now_name, slot_run_name
from .spec import ScheduleSpec

MISSED_AFTER = timedelta(seconds=60)
MISSED_EVENTS = 10
FINISHED = ("Succeeded", "Failed")
UPCOMING = 3


@dataclass(frozen=True)
class Run:
    """One PipelineRun of the schedule, as it exists."""

    name: str
    trigger: str  # schedule | manual | data
    slot: datetime | None
    phase: str | None = None
    created: datetime | None = None

    @property
    def active(self) -> bool:
        return self.phase not in FINISHED


@dataclass(frozen=True)
class Memory:
    """What the scheduler keeps between looks (the status, or the local state file)."""

    handled_until: datetime | None = None
    generation: int | None = None
    run_now: str | None = None


@dataclass(frozen=True)
class Firing:
    """A run to create."""

    name: str
    slot: datetime  # ${{schedule.scheduledTime}}
    trigger: str


@dataclass(frozen=True)
class Notice:
    """An Event to post: type Normal or Warning, a CamelCase reason, a message."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    create: tuple[Firing, ...]
    delete: tuple[str, ...]
    notices: tuple[Notice, ...]
    memory: Memory
    missed: int  # slots missed in this decision
    upcoming: tuple[datetime, ...]  # the next fire times
    adopted: tuple[str, ...] = ()  # firings whose run exists already
    data_held: bool = False  # the data firing was not started (a run is active): keep the watermark
    poll_now: bool = False  # run-now on a data-arrival schedule: poll at once


class _Missed:
    """Missed slots: those run late each reported, those dropped one by one up to MISSED_EVENTS, then summed up."""

    def __init__(self) -> None:
        self.count = 0
        self.notices: list[Notice] = []
        self.late: list[Notice] = []
        self.rest: list[datetime] = []  # first and last of those beyond MISSED_EVENTS
        self.rest_count = 0

    def run_late(self, slot: datetime, why: str) -> None:
        self.count += 1
        self.late.append(Notice("Warning", "MissedSchedule", f"slot {rfc3339(slot)} missed: {why}"))

    def add(self, slot: datetime, why: str) -> None:
        self.count += 1
        if len(self.notices) < MISSED_EVENTS:
            self.notices.append(Notice("Warning", "MissedSchedule", f"slot {rfc3339(slot)} missed: {why}"))
            return
        self.rest_count += 1
        self.rest = [min([*self.rest, slot]), max([*self.rest, slot])]

    def all_notices(self) -> list[Notice]:
        if not self.rest_count:
            return self.notices + self.late
        rest = f"{self.rest_count} more slots missed, from {rfc3339(self.rest[0])} to {rfc3339(self.rest[1])}"
        return self.notices + self.late + [Notice("Warning", "MissedSchedule", rest)]


def decide(spec: ScheduleSpec, memory: Memory, runs: Iterable[Run], now: datetime, *,
           generation: int | None = None, created: datetime | None = None, run_now: str | None = None,
           data: Firing | None = None) -> Decision:
    """What to do now; see the module's doc. `created` is the schedule's creation time."""
    runs = list(runs)
    notices: list[Notice] = []
    start = _counting_from(memory, generation, created, now, notices, spec)
    missed = _Missed()
    wanted = [] if spec.suspend or spec.schedule is None else _due(spec, start, now, missed)
    poll_now = False
    if run_now is not None and run_now != memory.run_now:
        if spec.uses_manifest:
            poll_now = True
        else:
            wanted.append(Firing(run_now_name(spec.name, run_now), now, "manual"))
    if data is not None:
        wanted.append(data)
    create, delete, adopted, data_held = _concurrency(spec, wanted, runs, notices)
    delete += _history(spec, [r for r in runs if r.name not in delete])
    upcoming = () if spec.suspend or spec.schedule is None else tuple(spec.schedule.upcoming(now, UPCOMING))
    new_memory = Memory(handled_until=max(start, now), generation=generation if generation is not None
                        else memory.generation, run_now=run_now if run_now is not None else memory.run_now)
    return Decision(tuple(create), tuple(delete), tuple(missed.all_notices() + notices), new_memory,
                    missed.count, upcoming, tuple(adopted), data_held, poll_now)


def _counting_from(memory: Memory, generation: int | None, created: datetime | None, now: datetime,
                   notices: list[Notice], spec: ScheduleSpec) -> datetime:
    if memory.handled_until is None:
        return min(created, now) if created is not None else now
    if generation is not None and memory.generation is not None and generation != memory.generation:
        after = spec.schedule.next_after(now) if spec.schedule is not None and not spec.suspend else None
        notices.append(Notice("Normal", "SpecChanged", f"spec changed (generation {generation}): slots count "
                              f"from now, nothing fired by the change; next: {rfc3339(after) if after else 'none'}"))
        return max(memory.handled_until, now)
    return memory.handled_until


def _due(spec: ScheduleSpec, start: datetime, now: datetime, missed: _Missed) -> list[Firing]:
    """The slots in (start, now] that run, oldest first; the others reported missed."""
    assert spec.schedule is not None  # decide() asks only a schedule with one
    deadline = timedelta(seconds=spec.starting_deadline) if spec.starting_deadline is not None else None
    late_after = min(MISSED_AFTER, deadline) if deadline is not None else MISSED_AFTER
    keep = {"RunAll": spec.max_missed_runs, "RunLatest": 1, "Skip": 0}[spec.missed_runs]
    why = {"RunAll": f"beyond maxMissedRuns ({spec.max_missed_runs}) of missedRuns RunAll",
           "RunLatest": "missedRuns RunLatest runs only the latest missed slot",
           "Skip": "missedRuns Skip"}[spec.missed_runs]
    late: list[datetime] = []
    on_time: list[datetime] = []
    for slot in spec.schedule.between(start, now):
        age = now - slot
        if deadline is not None and age > deadline:
            missed.add(slot, f"more than startingDeadlineSeconds ({spec.starting_deadline}) late")
        elif age > late_after:
            late.append(slot)
            if len(late) > keep:
                missed.add(late.pop(0), why)
        else:
            on_time.append(slot)
    if on_time and spec.missed_runs == "RunLatest":
        for slot in late:
            missed.add(slot, "a slot on time supersedes it (missedRuns RunLatest)")
        late = []
    for slot in late:
        missed.run_late(slot, f"run late as {slot_run_name(spec.name, slot)} (missedRuns {spec.missed_runs})")
    return [Firing(slot_run_name(spec.name, slot), slot, "schedule") for slot in late + on_time]


def _concurrency(spec: ScheduleSpec, wanted: list[Firing], runs: list[Run],
                 notices: list[Notice]) -> tuple[list[Firing], list[str], list[str], bool]:
    existing = {r.name for r in runs}
    active = [r.name for r in runs if r.active]
    create: list[Firing] = []
    delete: list[str] = []
    adopted: list[str] = []
    data_held = False
    for firing in wanted:
        if firing.name in existing:
            adopted.append(firing.name)
            continue
        busy = [name for name in active if name not in delete] + [f.name for f in create]
        if firing.trigger == "data" and busy and spec.concurrency != "Allow":
            data_held = True
            continue
        if busy and spec.concurrency == "Forbid":
            notices.append(Notice("Warning", "Skipped", f"{_what(firing)} skipped: run {busy[0]} is still "
                                  "active (concurrencyPolicy Forbid)"))
            continue
        if busy and spec.concurrency == "Replace":
            for earlier in list(create):
                create.remove(earlier)
                notices.append(Notice("Warning", "Skipped", f"{_what(earlier)} skipped: replaced at once by "
                                      f"{firing.name} (concurrencyPolicy Replace)"))
            for name in active:
                if name not in delete:
                    delete.append(name)
                    notices.append(Notice("Normal", "Replaced", f"run {name} deleted: replaced by {firing.name} "
                                          "(concurrencyPolicy Replace)"))
        create.append(firing)
    return create, delete, adopted, data_held


def _what(firing: Firing) -> str:
    return {"schedule": f"slot {rfc3339(firing.slot)}", "manual": "run-now",
            "data": "data arrival"}[firing.trigger]


def _history(spec: ScheduleSpec, runs: list[Run]) -> list[str]:
    """The oldest finished runs beyond the history limits."""
    doomed = []
    for phase, limit in (("Succeeded", spec.successful_history), ("Failed", spec.failed_history)):
        finished = sorted((r for r in runs if r.phase == phase), key=_age_key, reverse=True)
        doomed += [r.name for r in finished[limit:]]
    return doomed


def _age_key(run: Run) -> tuple:
    stamp = run.created or run.slot
    return (stamp is not None, stamp.timestamp() if stamp else 0.0, run.name)

