"""Fire times of a PipelineSchedule: cron or AML recurrence, in an IANA time zone.

Pure: no Kubernetes, no I/O, no clock. `parse_schedule` validates the `spec.schedule`
mapping (every problem at once, as `ScheduleError`) and gives a `Schedule`, whose
methods answer in aware UTC datetimes.

Both kinds of schedule name wall-clock minutes of `timeZone`. Cron is vixie cron:
names, ranges, steps, lists, 7 = Sunday, the @ macros; day-of-month and day-of-week
are OR-ed when both are restricted (neither field starts with `*`), AND-ed otherwise.
A recurrence counts its `interval` in wall-clock units from `startTime` (its minute,
hour, date, Monday-based week or month); without a startTime from Monday 1970-01-05
00:00. `hours` and `minutes` (Day, Week, Month; `minutes` also Hour) each default to
startTime's, or 0; `weekDays` (Week only) to startTime's weekday, or Monday;
`monthDays` (Month only, -1 = last day) to startTime's day, or 1. A month day a month
lacks (31 in April) is skipped in that month.

From wall clock to instants, the rule for daylight saving time:

- a wall time in a spring-forward gap fires at the first instant after the gap (02:30
  on the day Berlin goes 02:00 -> 03:00 fires at 03:00 CEST);
- a wall time that happens twice (fall-back) fires once, at its first occurrence;
- so a schedule fires at most once per wall-clock minute (`*/15 * * * *` does not fire
  again at the repeated 02:15; `0 * * * *` skips the repeated hour) and at most once
  per instant (gap times and the first minute after the gap fire once, together).

The set of fire times is therefore fixed by the schedule alone: `next_after(t)` is the
least fire time after t, whatever t is. No fire is before `startTime` or after
`endTime`. Offsets are checked at both ends of each wall-clock hour; an hour whose
offset is the same at both ends is taken to have no transition (no zone changes its
offset twice within an hour). A schedule that finds no fire time within 400 years of
a lookup (say recurrence monthDays [30] every 12th month from February) has none.
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ..problems import did_you_mean, lines, unknown_fields

UTC = timezone.utc
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_MINUTES = tuple(timedelta(minutes=m) for m in range(60))
_ONE_MINUTE = _MINUTES[1]
_HORIZON_YEARS = 400  # the Gregorian calendar repeats every 400 years
_NO_START = datetime(1970, 1, 5)  # a Monday: what recurrence intervals count from without startTime

_SCHEDULE_FIELDS = ("cron", "recurrence", "timeZone", "startTime", "endTime")
_RECURRENCE_FIELDS = ("frequency", "interval", "hours", "minutes", "weekDays", "monthDays")
_FREQUENCIES = ("Minute", "Hour", "Day", "Week", "Month")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_MONTH_NAMES = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    names_hint: str = ""
    open_high: int | None = None  # where `*` and `a/n` end, if not at `high` (day-of-week: 6)


_CRON_FIELDS = (
    _CronField("minute", 0, 59), _CronField("hour", 0, 23), _CronField("day-of-month", 1, 31),
    _CronField("month", 1, 12, _MONTH_NAMES, " or a name JAN-DEC"),
    _CronField("day-of-week", 0, 7, _DAY_NAMES, " or a name SUN-SAT", open_high=6),
)
_NUMBER = re.compile(r"[0-9]+")


class ScheduleError(ValueError):
    """An invalid `spec.schedule`; `.errors` has one "path: problem; fix" line each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid schedule:\n  " + "\n  ".join(errors))


class _Pattern(Protocol):
    """The wall-clock minutes a schedule names, as selected days, hours and minutes."""

    def days_from(self, start: date, last: date) -> Iterator[date]: ...
    def hours(self, day: date) -> Sequence[int]: ...
    def minutes(self, day: date, hour: int) -> Sequence[int]: ...


@dataclass(frozen=True)
class _Cron:
    minute_set: tuple[int, ...]
    hour_set: tuple[int, ...]
    month_days: frozenset[int]
    months: frozenset[int]
    week_days: frozenset[int]  # 0 = Sunday
    day_or: bool  # vixie: both day fields restricted, a day matches either

    def days_from(self, start: date, last: date) -> Iterator[date]:
        year, month = start.year, start.month
        while (year, month) <= (last.year, last.month):
            if month in self.months:
                for day in self._days(year, month):
                    if (year, month, day) >= (start.year, start.month, start.day):
                        yield date(year, month, day)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def _days(self, year: int, month: int) -> list[int]:
        first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
        days = []
        for day in range(1, length + 1):
            by_date = day in self.month_days
            by_weekday = (first_weekday + day) % 7 in self.week_days  # shifts to Sunday = 0
            if (by_date or by_weekday) if self.day_or else (by_date and by_weekday):
                days.append(day)
        return days

    def hours(self, day: date) -> Sequence[int]:
        return self.hour_set

    def minutes(self, day: date, hour: int) -> Sequence[int]:
        return self.minute_set


@dataclass(frozen=True)
class _Recurrence:
    frequency: str
    interval: int
    origin: datetime  # wall clock; intervals count from it
    hour_set: tuple[int, ...]
    minute_set: tuple[int, ...]
    week_days: tuple[int, ...]  # 0 = Monday
    month_days: tuple[int, ...]  # -1 = last

    def days_from(self, start: date, last: date) -> Iterator[date]:
        origin = self.origin
        if self.frequency == "Minute":
            return self._every(start, last, 1440, origin.hour * 60 + origin.minute)
        if self.frequency == "Hour":
            return self._every(start, last, 24, origin.hour)
        if self.frequency == "Day":
            return self._every(start, last, 1, 0)
        if self.frequency == "Week":
            return self._weeks(start, last)
        return self._months(start, last)

    def _every(self, start: date, last: date, units_a_day: int, origin_unit: int) -> Iterator[date]:
        """The days holding a fire: every `interval` minutes, hours or days from origin's unit."""
        ordinal, origin_day = start.toordinal(), self.origin.toordinal()
        while ordinal <= last.toordinal():
            first = (ordinal - origin_day) * units_a_day - origin_unit  # this day's first unit, from origin
            ordinal += ((-first) % self.interval) // units_a_day  # to the day of the next fire
            if ordinal <= last.toordinal():
                yield date.fromordinal(ordinal)
            ordinal += 1

    def _weeks(self, start: date, last: date) -> Iterator[date]:
        origin_monday = self.origin.toordinal() - self.origin.weekday()
        week = (start.toordinal() - origin_monday) // 7
        week += (-week) % self.interval
        while (monday := origin_monday + 7 * week) <= last.toordinal():
            for weekday in self.week_days:
                if start.toordinal() <= monday + weekday <= last.toordinal():
                    yield date.fromordinal(monday + weekday)
            week += self.interval

    def _months(self, start: date, last: date) -> Iterator[date]:
        origin_month = self.origin.year * 12 + self.origin.month - 1
        month = start.year * 12 + start.month - 1
        month += (origin_month - month) % self.interval
        while (year := month // 12) <= last.year:
            length = calendar.monthrange(year, month % 12 + 1)[1]
            days = sorted({length if day == -1 else day for day in self.month_days if day <= length})
            for day in days:
                candidate = date(year, month % 12 + 1, day)
                if start <= candidate <= last:
                    yield candidate
            month += self.interval

    def hours(self, day: date) -> Sequence[int]:
        if self.frequency == "Minute":
            return range(24)
        if self.frequency == "Hour":
            days = day.toordinal() - self.origin.toordinal()
            return range((self.origin.hour - days * 24) % self.interval, 24, self.interval)
        return self.hour_set

    def minutes(self, day: date, hour: int) -> Sequence[int]:
        if self.frequency == "Minute":
            days = day.toordinal() - self.origin.toordinal()
            first = days * 1440 + (hour - self.origin.hour) * 60 - self.origin.minute
            return range((-first) % self.interval, 60, self.interval)
        return self.minute_set


@dataclass(frozen=True)
class Schedule:
    """A validated schedule; every answer is an aware UTC datetime."""

    pattern: _Pattern
    zone: ZoneInfo
    start_time: datetime | None = None  # aware UTC
    end_time: datetime | None = None

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire time strictly after `t`; None if there is none (past endTime)."""
        return next(self._fires(_aware(t), _FAR_FUTURE), None)

    def between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The fire times in (start, end], ascending, lazily."""
        return self._fires(_aware(start), _aware(end))

    def upcoming(self, t: datetime, n: int) -> list[datetime]:
        """The next `n` fire times after `t` (fewer past endTime)."""
        return list(itertools.islice(self._fires(_aware(t), _FAR_FUTURE), n))

    def _fires(self, after: datetime, until: datetime) -> Iterator[datetime]:
        after = after.astimezone(UTC)
        if self.start_time is not None:
            after = max(after, self.start_time - timedelta(microseconds=1))  # startTime itself may fire
        if self.end_time is not None:
            until = min(until, self.end_time)
        wall = after.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)
        last = after
        for hour, minutes in self._wall_hours(wall):
            for t in self._instants(hour, minutes):
                if t > last:  # also drops a gap's duplicates and the minutes before `after`
                    if t > until:
                        return
                    yield t
                    last = t

    def _wall_hours(self, start: datetime) -> Iterator[tuple[datetime, Sequence[int]]]:
        """Each wall-clock hour from `start` on with its minutes to fire, ascending."""
        first_day = start.date()
        last_day = date(min(first_day.year + _HORIZON_YEARS, date.max.year - 1), 12, 31)
        for day in self.pattern.days_from(first_day, last_day):
            for hour in self.pattern.hours(day):
                if day == first_day and hour < start.hour:
                    continue
                minutes = self.pattern.minutes(day, hour)
                if day == first_day and hour == start.hour:
                    minutes = [m for m in minutes if m >= start.minute]
                if minutes:
                    yield datetime(day.year, day.month, day.day, hour), minutes

    def _instants(self, hour: datetime, minutes: Sequence[int]) -> list[datetime]:
        offset = _steady_offset(hour, self.zone)
        if offset is None:
            return [_wall_to_utc(hour.replace(minute=m), self.zone) for m in minutes]
        base = (hour - offset).replace(tzinfo=UTC)
        return [base + _MINUTES[m] for m in minutes]


def slot_name(t: datetime) -> str:
    """The fire time `t` as "yyyymmddhhmm" in UTC: the suffix of the run it creates."""
    return _aware(t).astimezone(UTC).strftime("%Y%m%d%H%M")


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} has no time zone; give an aware datetime")
    return t


def _steady_offset(hour: datetime, zone: ZoneInfo) -> timedelta | None:
    """The zone's UTC offset all through wall-clock `hour`; None if a transition falls in it."""
    first, last = hour.replace(tzinfo=zone), hour.replace(minute=59, tzinfo=zone)
    offset = first.utcoffset()
    steady = offset == first.replace(fold=1).utcoffset() == last.utcoffset() == last.replace(fold=1).utcoffset()
    return offset if steady else None


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall-clock time fires: its first occurrence, or the end of its gap."""
    before, after = wall.replace(tzinfo=zone).utcoffset(), wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert before is not None and after is not None  # a time in a ZoneInfo has an offset
    if before >= after:  # a plain time, or one that happens twice: fold=0 is the first
        return (wall - before).replace(tzinfo=UTC)
    # In a gap: the transition lies in (wall - after, wall - before]; find its minute.
    low, high = wall - after, wall - before
    while high - low > _ONE_MINUTE:
        middle = low + (high - low) // _ONE_MINUTE // 2 * _ONE_MINUTE
        if middle.replace(tzinfo=UTC).astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(tzinfo=UTC)


# -- parsing -----------------------------------------------------------------------


def parse_schedule(schedule: dict) -> Schedule:
    """Validate a `spec.schedule` mapping; raise ScheduleError with all its problems."""
    if not isinstance(schedule, dict):
        raise ScheduleError(["spec.schedule: expected a mapping with cron or recurrence, "
                             f"got {type(schedule).__name__}"])
    errors: list[str] = []
    _unknown_fields("spec.schedule", schedule, _SCHEDULE_FIELDS, errors)
    zone = _parse_zone("UTC" if schedule.get("timeZone") is None else schedule["timeZone"], errors)
    start = _parse_time("spec.schedule.startTime", schedule.get("startTime"), zone, errors)
    end = _parse_time("spec.schedule.endTime", schedule.get("endTime"), zone, errors)
    if start is not None and end is not None and end < start:
        errors.append(f"spec.schedule.endTime: {end:%Y-%m-%dT%H:%M:%SZ} is before startTime "
                      f"{start:%Y-%m-%dT%H:%M:%SZ}; move endTime later or startTime earlier")
    pattern: _Pattern | None = None
    if "cron" in schedule and "recurrence" in schedule:
        errors.append("spec.schedule: has both cron and recurrence; keep one")
    elif "cron" in schedule:
        pattern = _parse_cron(schedule["cron"], errors)
    elif "recurrence" in schedule:
        origin = start.astimezone(zone).replace(tzinfo=None) if start and zone else None
        pattern = _parse_recurrence(schedule["recurrence"], origin, errors)
    else:
        errors.append('spec.schedule: needs cron (e.g. "0 6 * * 1-5") or recurrence '
                      "(e.g. {frequency: Day, hours: [6], minutes: [0]})")
    if errors:
        raise ScheduleError(errors)
    assert pattern is not None and zone is not None  # else a problem was reported
    return Schedule(pattern, zone, start, end)


def _unknown_fields(path: str, value: dict, known: tuple[str, ...], errors: list[str]) -> None:
    errors.extend(lines(unknown_fields(path, value, known)))


def _parse_zone(name: Any, errors: list[str]) -> ZoneInfo | None:
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    hint = did_you_mean(str(name), sorted(available_timezones()), "use an IANA name such as Europe/Berlin or UTC")
    errors.append(f"spec.schedule.timeZone: {name!r} is not a known time zone; {hint}")
    return None


def _parse_time(path: str, value: Any, zone: ZoneInfo | None, errors: list[str]) -> datetime | None:
    """An ISO 8601 string, datetime or date as aware UTC; a naive one is wall clock in `zone`."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", value.strip()))
        except ValueError:
            pass
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        errors.append(f"{path}: {value!r} is not an ISO 8601 date-time; write e.g. 2026-01-01T06:00:00 "
                      "(wall clock in timeZone) or 2026-01-01T05:00:00Z")
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        return _wall_to_utc(value.replace(tzinfo=None), zone) if zone else None
    return value.astimezone(UTC)


def _parse_cron(text: Any, errors: list[str]) -> _Cron | None:
    path = "spec.schedule.cron"
    if not isinstance(text, str):
        errors.append(f'{path}: expected a string such as "0 6 * * 1-5", got {text!r}')
        return None
    if text.strip().startswith("@") and text.strip().lower() not in _MACROS:
        errors.append(f"{path}: {text!r} is not a supported macro; use one of {', '.join(_MACROS)}")
        return None
    fields = _MACROS.get(text.strip().lower(), text).split()
    if len(fields) != 5:
        errors.append(f"{path}: {text!r} has {len(fields)} fields; a cron expression has 5 (minute hour "
                      f"day-of-month month day-of-week) or is one of {', '.join(_MACROS)}")
        return None
    problems: list[str] = []
    values = [_parse_cron_field(f"field {i} ({spec.name})", field, spec, problems)
              for i, (field, spec) in enumerate(zip(fields, _CRON_FIELDS), 1)]
    errors.extend(f"{path}: {problem}" for problem in problems)
    if problems:
        return None
    minutes, hours, month_days, months, week_days = values
    dom_star, dow_star = fields[2].startswith("*"), fields[4].startswith("*")
    if not dom_star and dow_star and min(month_days) > max(_longest_month(m) for m in months):
        errors.append(f"{path}: day-of-month {fields[2]!r} never occurs in month {fields[3]!r}, so the "
                      "schedule would never fire; choose days that exist in those months")
        return None
    return _Cron(tuple(sorted(minutes)), tuple(sorted(hours)), frozenset(month_days), frozenset(months),
                 frozenset(d % 7 for d in week_days), day_or=not dom_star and not dow_star)


def _longest_month(month: int) -> int:
    return calendar.monthrange(2000, month)[1]  # 2000 is a leap year: February has 29


def _parse_cron_field(label: str, text: str, spec: _CronField, problems: list[str]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        try:
            values.update(_parse_cron_item(item, spec))
        except ValueError as problem:
            problems.append(f"{label} {problem}")
    return values


def _parse_cron_item(item: str, spec: _CronField) -> range:
    """One list item: `*`, `a`, `a-b`, each optionally `/step`; `a/step` runs to the field's end."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
            raise ValueError(f"'{item}' has step {step_text!r}; a step is a whole number from 1")
        step = int(step_text)
    open_high = spec.open_high if spec.open_high is not None else spec.high
    if base == "*":
        return range(spec.low, open_high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _cron_value(first_text, item, spec)
    if dash:
        last = _cron_value(last_text, item, spec)
        if last < first:
            raise ValueError(f"'{item}' is a backwards range; write it as two, e.g. "
                             f"{first_text}-{spec.high},{spec.low}-{last_text}")
    else:
        last = max(first, open_high) if slash else first
    return range(first, last + 1, step)


def _cron_value(text: str, item: str, spec: _CronField) -> int:
    if spec.names and text.lower() in spec.names:
        return spec.names[text.lower()]
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"'{item}': {text!r} is not a number{spec.names_hint}")
    if not spec.low <= int(text) <= spec.high:
        raise ValueError(f"'{text}' is out of range {spec.low}-{spec.high}")
    return int(text)


def _parse_recurrence(value: Any, origin: datetime | None, errors: list[str]) -> _Recurrence | None:
    path = "spec.schedule.recurrence"
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a mapping such as {{frequency: Day, hours: [6], minutes: [0]}}, "
                      f"got {type(value).__name__}")
        return None
    before = len(errors)
    _unknown_fields(path, value, _RECURRENCE_FIELDS, errors)
    frequency = _parse_frequency(value.get("frequency"), errors)
    interval = value.get("interval", 1)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        unit = f"{frequency.lower()}s" if frequency else "frequency units"
        errors.append(f"{path}.interval: {interval!r} is not a whole number from 1; it counts the {unit} between fires")
    applies = {"hours": ("Day", "Week", "Month"), "minutes": ("Hour", "Day", "Week", "Month"),
               "weekDays": ("Week",), "monthDays": ("Month",)}
    for key, frequencies in applies.items():
        if key in value and frequency is not None and frequency not in frequencies:
            errors.append(f"{path}.{key}: only applies to frequency {' or '.join(frequencies)}; "
                          f"remove it or set frequency: {frequencies[0]}")
    hours = _int_list(f"{path}.hours", value.get("hours"), range(24), "hours 0-23", errors)
    minutes = _int_list(f"{path}.minutes", value.get("minutes"), range(60), "minutes 0-59", errors)
    month_days = _int_list(f"{path}.monthDays", value.get("monthDays"), [*range(1, 32), -1],
                           "days 1-31, or -1 for the last day", errors)
    week_days = _week_days(f"{path}.weekDays", value.get("weekDays"), errors)
    if len(errors) > before:
        return None
    assert frequency is not None  # else a problem was reported
    start = origin or _NO_START
    return _Recurrence(
        frequency, interval, start,
        hours or (start.hour,), minutes or (start.minute,),
        week_days or (start.weekday(),), month_days or (start.day if origin else 1,),
    )


def _parse_frequency(value: Any, errors: list[str]) -> str | None:
    by_lower = {f.lower(): f for f in _FREQUENCIES}
    if isinstance(value, str) and value.lower() in by_lower:
        return by_lower[value.lower()]
    problem = "required" if value is None else f"{value!r} is not a frequency"
    errors.append(f"spec.schedule.recurrence.frequency: {problem}; use one of {', '.join(_FREQUENCIES)}")
    return None


def _int_list(path: str, value: Any, allowed: Sequence[int], what: str, errors: list[str]) -> tuple[int, ...]:
    """The sorted distinct integers of a list field (empty if absent or invalid)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        errors.append(f"{path}: expected a non-empty list of {what}, got {value!r}")
        return ()
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v not in allowed]
    if bad:
        errors.append(f"{path}: {_invalid(bad)}; use {what}")
        return ()
    return tuple(sorted(set(value)))


def _week_days(path: str, value: Any, errors: list[str]) -> tuple[int, ...]:
    """Day names (any case) as weekday numbers, Monday = 0."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        errors.append(f"{path}: expected a non-empty list of day names such as [Monday, Friday], got {value!r}")
        return ()
    by_lower = {name.lower(): i for i, name in enumerate(_WEEKDAYS)}
    bad = [v for v in value if not isinstance(v, str) or v.lower() not in by_lower]
    if bad:
        errors.append(f"{path}: {_invalid(bad)}; use {', '.join(_WEEKDAYS)}")
        return ()
    return tuple(sorted({by_lower[v.lower()] for v in value}))


def _invalid(values: list) -> str:
    return ", ".join(map(repr, values)) + (" is not valid" if len(values) == 1 else " are not valid")
