"""Fire times of PipelineSchedule: DST, calendars, recurrence intervals, validation, croniter."""

import random
from bisect import bisect_left
from datetime import date, datetime, timedelta, timezone
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from parallelrun.runner.schedules.firetimes import Schedule, ScheduleError, parse_schedule, slot_name

UTC = timezone.utc


def at(text: str) -> datetime:
    """An aware UTC instant from "YYYY-MM-DD HH:MM"."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def fires(schedule: dict, start: str, end: str) -> list[str]:
    """The fire times in (start, end] as "YYYY-MM-DD HH:MM" UTC."""
    return [f"{t:%Y-%m-%d %H:%M}" for t in parse_schedule(schedule).between(at(start), at(end))]


def upcoming(schedule: dict, start: str, n: int) -> list[str]:
    return [f"{t:%Y-%m-%d %H:%M}" for t in parse_schedule(schedule).upcoming(at(start), n)]


def errors_of(schedule) -> list[str]:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(schedule)
    return caught.value.errors


# -- daylight saving time -------------------------------------------------------------


def test_berlin_spring_forward_gap_fires_at_the_end_of_the_gap():
    # 2026-03-29 02:00 CET -> 03:00 CEST, at 01:00 UTC: 02:30 does not exist that day.
    daily = {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}
    assert upcoming(daily, "2026-03-27 12:00", 3) == ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"]
    # 02:00 and 02:30 (gap) and 03:00 (the first minute after it) are one instant: one fire.
    half_hourly = {"cron": "*/30 * * * *", "timeZone": "Europe/Berlin"}
    assert fires(half_hourly, "2026-03-29 00:00", "2026-03-29 02:00") == [
        "2026-03-29 00:30", "2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 02:00"]
    # A recurrence counts wall-clock minutes: the same fires.
    every_30 = {"recurrence": {"frequency": "Minute", "interval": 30}, "timeZone": "Europe/Berlin",
                "startTime": "2026-03-28T00:00:00"}
    assert fires(every_30, "2026-03-29 00:00", "2026-03-29 02:00") == fires(half_hourly, "2026-03-29 00:00",
                                                                            "2026-03-29 02:00")


def test_berlin_fall_back_fires_once_at_the_first_occurrence():
    # 2026-10-25 03:00 CEST -> 02:00 CET, at 01:00 UTC: 02:00-02:59 happen twice.
    daily = {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}
    assert upcoming(daily, "2026-10-24 12:00", 2) == ["2026-10-25 00:30", "2026-10-26 01:30"]
    quarterly = {"cron": "*/15 * * * *", "timeZone": "Europe/Berlin"}
    assert fires(quarterly, "2026-10-24 23:50", "2026-10-25 02:20") == [
        "2026-10-25 00:00", "2026-10-25 00:15", "2026-10-25 00:30", "2026-10-25 00:45",  # 02:xx CEST
        "2026-10-25 02:00", "2026-10-25 02:15"]  # 03:00 CET; the repeated 02:xx CET do not fire
    hourly = {"cron": "0 * * * *", "timeZone": "Europe/Berlin"}
    assert fires(hourly, "2026-10-24 23:30", "2026-10-25 03:00") == [
        "2026-10-25 00:00", "2026-10-25 02:00", "2026-10-25 03:00"]


def test_new_york_transitions():
    # 2026-03-08 02:00 EST -> 03:00 EDT at 07:00 UTC; 2026-11-01 02:00 EDT -> 01:00 EST at 06:00 UTC.
    spring = {"cron": "30 2 * * *", "timeZone": "America/New_York"}
    assert upcoming(spring, "2026-03-07 00:00", 3) == ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"]
    fall = {"cron": "30 1 * * *", "timeZone": "America/New_York"}
    assert upcoming(fall, "2026-10-31 00:00", 3) == ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"]
    every_20 = {"cron": "*/20 1 * * *", "timeZone": "America/New_York"}
    # 01:00 EDT (05:00 UTC) is the lookup's start; 01:00-01:40 EST (06:00-06:40 UTC) repeat the wall clock.
    assert fires(every_20, "2026-11-01 05:00", "2026-11-01 07:00") == ["2026-11-01 05:20", "2026-11-01 05:40"]


def test_lord_howe_half_hour_shifts():
    # 2026-04-05 02:00 LHDT (+11) -> 01:30 LHST (+10:30) at 15:00 UTC on 04-04: 01:30-01:59 twice.
    quarterly = {"cron": "*/15 * * * *", "timeZone": "Australia/Lord_Howe"}
    assert fires(quarterly, "2026-04-04 13:50", "2026-04-04 15:40") == [
        "2026-04-04 14:00", "2026-04-04 14:15", "2026-04-04 14:30", "2026-04-04 14:45", "2026-04-04 15:30"]
    # 2026-10-04 02:00 LHST -> 02:30 LHDT at 15:30 UTC on 10-03: 02:00 and 02:15 do not exist.
    assert fires(quarterly, "2026-10-03 15:00", "2026-10-03 16:00") == [
        "2026-10-03 15:15", "2026-10-03 15:30", "2026-10-03 15:45", "2026-10-03 16:00"]
    daily = {"recurrence": {"frequency": "Day", "hours": [2], "minutes": [15]}, "timeZone": "Australia/Lord_Howe"}
    assert upcoming(daily, "2026-10-02 00:00", 3) == ["2026-10-02 15:45", "2026-10-03 15:30", "2026-10-04 15:15"]


@pytest.mark.parametrize("zone_name,day", [
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"), ("America/New_York", "2026-03-08"),
    ("America/New_York", "2026-11-01"), ("Australia/Lord_Howe", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),
])
@pytest.mark.parametrize("expression,matches", [
    ("*/15 * * * *", lambda wall: wall.minute % 15 == 0),
    ("*/7 1-3 * * *", lambda wall: wall.minute % 7 == 0 and 1 <= wall.hour <= 3),
    ("0 * * * *", lambda wall: wall.minute == 0),
    ("30 2 * * *", lambda wall: (wall.hour, wall.minute) == (2, 30)),
    ("10,40 1 * * *", lambda wall: wall.hour == 1 and wall.minute in (10, 40)),
])
def test_dst_rule_against_a_minute_by_minute_reference(zone_name, day, expression, matches):
    """A wall time fires at the first instant whose wall clock has reached it.

    That one definition is the rule: a time in a gap fires when the gap ends, a
    repeated time at its first occurrence. Here it is applied by brute force, minute by
    minute over three days, and compared with the engine.
    """
    zone = ZoneInfo(zone_name)
    first = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) - timedelta(days=1)
    instants = [first + timedelta(minutes=m) for m in range(3 * 1440)]
    reached, latest = [], datetime.min
    for t in instants:  # the latest wall-clock time shown so far, at each instant
        latest = max(latest, t.astimezone(zone).replace(tzinfo=None))
        reached.append(latest)
    expected, wall = set(), reached[0]
    while wall <= reached[-1]:  # every wall-clock minute, those in a gap too
        if matches(wall):
            expected.add(instants[bisect_left(reached, wall)])
        wall += timedelta(minutes=1)
    inner_start, inner_end = first + timedelta(hours=6), first + timedelta(hours=66)
    got = list(parse_schedule({"cron": expression, "timeZone": zone_name}).between(inner_start, inner_end))
    assert got == sorted(t for t in expected if inner_start < t <= inner_end)


def test_the_fire_times_do_not_depend_on_where_a_lookup_starts():
    schedule = parse_schedule({"cron": "*/15 1-3 * * *", "timeZone": "Europe/Berlin"})
    start, end = at("2026-10-24 22:00"), at("2026-10-25 04:00")
    everything = list(schedule.between(start, end + timedelta(days=1)))
    t = start
    while t < end:
        assert schedule.next_after(t) == next(f for f in everything if f > t), t
        t += timedelta(minutes=5)
    assert all(f.tzinfo is UTC for f in everything)


# -- calendars ------------------------------------------------------------------------


def test_cron_31st_skips_short_months():
    assert upcoming({"cron": "0 0 31 * *"}, "2026-01-01 00:00", 7) == [
        "2026-01-31 00:00", "2026-03-31 00:00", "2026-05-31 00:00", "2026-07-31 00:00",
        "2026-08-31 00:00", "2026-10-31 00:00", "2026-12-31 00:00"]


def test_month_days_31_and_last():
    month = {"frequency": "Month", "hours": [0], "minutes": [0]}
    thirty_first = {"recurrence": {**month, "monthDays": [31]}, "startTime": "2026-01-01T00:00:00Z"}
    assert upcoming(thirty_first, "2025-12-01 00:00", 5) == [
        "2026-01-31 00:00", "2026-03-31 00:00", "2026-05-31 00:00", "2026-07-31 00:00", "2026-08-31 00:00"]
    last = {"recurrence": {**month, "monthDays": [-1]}}
    assert upcoming(last, "2027-12-31 00:00", 4) == [
        "2028-01-31 00:00", "2028-02-29 00:00", "2028-03-31 00:00", "2028-04-30 00:00"]
    assert upcoming(last, "2027-02-01 00:00", 1) == ["2027-02-28 00:00"]
    # 30 and -1 are the same day in a 30-day month: it fires once.
    both = {"recurrence": {**month, "monthDays": [30, -1]}}
    assert upcoming(both, "2026-04-01 00:00", 3) == ["2026-04-30 00:00", "2026-05-30 00:00", "2026-05-31 00:00"]


def test_leap_days_are_found_fast_across_years_and_centuries():
    leap = parse_schedule({"cron": "0 0 29 2 *"})
    assert leap.upcoming(at("2026-01-01 00:00"), 3) == [at("2028-02-29 00:00"), at("2032-02-29 00:00"),
                                                        at("2036-02-29 00:00")]
    assert leap.next_after(at("2096-03-01 00:00")) == at("2104-02-29 00:00")  # 2100 is no leap year
    assert leap.next_after(at("2396-03-01 00:00")) == at("2400-02-29 00:00")  # 2400 is one


def test_a_recurrence_that_can_never_fire_has_no_next_time():
    # Every 12th month from February is always February, which has no 30th.
    never = parse_schedule({"recurrence": {"frequency": "Month", "interval": 12, "monthDays": [30]},
                            "startTime": "2026-02-01T00:00:00Z"})
    assert never.next_after(at("2026-01-01 00:00")) is None


# -- recurrence intervals -------------------------------------------------------------


def test_minute_interval_counts_from_start_time():
    every_7 = {"recurrence": {"frequency": "Minute", "interval": 7}, "startTime": "2026-05-01T10:03:00Z"}
    assert upcoming(every_7, "2026-01-01 00:00", 3) == ["2026-05-01 10:03", "2026-05-01 10:10", "2026-05-01 10:17"]
    assert fires(every_7, "2026-05-01 10:55", "2026-05-01 11:10") == ["2026-05-01 10:59", "2026-05-01 11:06"]
    # 13 h 57 min after the start is 837 minutes = 119 * 7 + 4: the next is 840 minutes after it.
    assert upcoming(every_7, "2026-05-02 00:00", 1) == ["2026-05-02 00:03"]


def test_hour_interval_counts_from_start_time_in_the_zone():
    every_5 = {"recurrence": {"frequency": "Hour", "interval": 5}, "timeZone": "Europe/Berlin",
               "startTime": "2026-05-01T22:20:00"}  # naive: Berlin wall clock, CEST
    assert upcoming(every_5, "2026-05-01 00:00", 4) == [
        "2026-05-01 20:20", "2026-05-02 01:20", "2026-05-02 06:20", "2026-05-02 11:20"]
    with_minutes = {"recurrence": {"frequency": "Hour", "interval": 2, "minutes": [0, 30]},
                    "startTime": "2026-05-01T09:10:00Z"}
    assert upcoming(with_minutes, "2026-05-01 00:00", 4) == [
        "2026-05-01 09:30", "2026-05-01 11:00", "2026-05-01 11:30", "2026-05-01 13:00"]


def test_day_interval_counts_from_the_start_date_and_keeps_wall_clock():
    every_2 = {"recurrence": {"frequency": "Day", "interval": 2}, "timeZone": "Europe/Berlin",
               "startTime": "2026-03-26T06:00:00"}  # 06:00 CET, the time of day of every fire
    assert upcoming(every_2, "2026-01-01 00:00", 3) == ["2026-03-26 05:00", "2026-03-28 05:00", "2026-03-30 04:00"]
    twice = {"recurrence": {"frequency": "Day", "interval": 3, "hours": [18, 6], "minutes": [0]},
             "startTime": "2026-01-30T12:00:00Z"}
    assert upcoming(twice, "2026-01-01 00:00", 4) == [
        "2026-01-30 18:00", "2026-02-02 06:00", "2026-02-02 18:00", "2026-02-05 06:00"]
    midnight = {"recurrence": {"frequency": "day"}}  # any case, as AML v2 writes it; no startTime: midnight
    assert upcoming(midnight, "2026-01-01 00:00", 2) == ["2026-01-02 00:00", "2026-01-03 00:00"]


def test_week_interval_counts_weeks_from_the_start_week_monday_first():
    # startTime is Wednesday 2026-01-07; its week starts Monday 01-05; every other week.
    every_2 = {"recurrence": {"frequency": "Week", "interval": 2, "weekDays": ["Monday", "friday"]},
               "startTime": "2026-01-07T09:30:00Z"}
    assert upcoming(every_2, "2026-01-01 00:00", 4) == [
        "2026-01-09 09:30", "2026-01-19 09:30", "2026-01-23 09:30", "2026-02-02 09:30"]
    same_day = {"recurrence": {"frequency": "Week"}, "startTime": "2026-01-07T09:30:00Z"}  # Wednesdays
    assert upcoming(same_day, "2026-01-08 00:00", 2) == ["2026-01-14 09:30", "2026-01-21 09:30"]
    mondays = {"recurrence": {"frequency": "Week"}}  # no startTime: Monday midnight
    assert upcoming(mondays, "2026-01-01 00:00", 1) == ["2026-01-05 00:00"]


def test_month_interval_counts_months_from_the_start_month():
    quarterly = {"recurrence": {"frequency": "Month", "interval": 3}, "startTime": "2026-01-15T08:00:00Z"}
    assert upcoming(quarterly, "2025-01-01 00:00", 5) == [
        "2026-01-15 08:00", "2026-04-15 08:00", "2026-07-15 08:00", "2026-10-15 08:00", "2027-01-15 08:00"]
    first = {"recurrence": {"frequency": "Month"}}  # no startTime: the 1st at midnight
    assert upcoming(first, "2026-01-15 00:00", 1) == ["2026-02-01 00:00"]


# -- bounds, macros, syntax -----------------------------------------------------------


def test_start_and_end_time_bound_the_fires():
    bounded = {"cron": "0 * * * *", "startTime": "2026-01-01T10:00:00Z", "endTime": "2026-01-01T13:00:00Z"}
    assert upcoming(bounded, "2025-06-01 00:00", 10) == [
        "2026-01-01 10:00", "2026-01-01 11:00", "2026-01-01 12:00", "2026-01-01 13:00"]  # both inclusive
    assert parse_schedule(bounded).next_after(at("2026-01-01 13:00")) is None
    assert fires(bounded, "2026-01-01 10:30", "2026-01-01 12:00") == ["2026-01-01 11:00", "2026-01-01 12:00"]


@pytest.mark.parametrize("start", [
    "2026-06-01T08:00:00",  # naive: wall clock in the schedule's zone
    "2026-06-01T06:00:00Z", "2026-06-01T07:00:00+01:00",
    datetime(2026, 6, 1, 8, tzinfo=ZoneInfo("Europe/Berlin")), datetime(2026, 6, 1, 8),
])
def test_start_time_forms(start):
    schedule = parse_schedule({"cron": "* * * * *", "timeZone": "Europe/Berlin", "startTime": start})
    assert schedule.start_time == at("2026-06-01 06:00")
    assert schedule.next_after(at("2026-01-01 00:00")) == at("2026-06-01 06:00")


def test_a_date_start_time_is_midnight_in_the_zone():
    schedule = parse_schedule({"cron": "@hourly", "timeZone": "America/New_York", "startTime": date(2026, 1, 1)})
    assert schedule.start_time == at("2026-01-01 05:00")


@pytest.mark.parametrize("macro,expression", [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"), ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@DAILY", "0 0 * * *"),
])
def test_macros(macro, expression):
    assert upcoming({"cron": macro}, "2026-02-10 07:13", 5) == upcoming({"cron": expression}, "2026-02-10 07:13", 5)


@pytest.mark.parametrize("named,numbered", [
    ("0 9 * JAN-MAR mon-fri", "0 9 * 1-3 1-5"), ("0 0 * * SUN", "0 0 * * 0"), ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * Fri-7", "0 0 * * 5,6,0"), ("0 0 1 jun,Dec *", "0 0 1 6,12 *"), ("0 0 * * 1-7", "0 0 * * *"),
    ("0 0 * * 7-7", "0 0 * * 0"),
])
def test_names_and_sunday_as_7(named, numbered):
    assert upcoming({"cron": named}, "2026-01-01 00:00", 30) == upcoming({"cron": numbered}, "2026-01-01 00:00", 30)


@pytest.mark.parametrize("expression,expected", [
    ("*/20 0 * * *", ["00:00", "00:20", "00:40"]),
    ("10-20/5 0 * * *", ["00:10", "00:15", "00:20"]),
    ("50/3 0 * * *", ["00:50", "00:53", "00:56", "00:59"]),  # a/n runs to the end of the field
    ("1,2,5-6 0 * * *", ["00:01", "00:02", "00:05", "00:06"]),
    ("0 */7 * * *", ["00:00", "07:00", "14:00", "21:00"]),
    ("5-5 0 * * *", ["00:05"]),  # a range with equal ends is one value (croniter: the whole field)
])
def test_steps_ranges_and_lists(expression, expected):
    day = [t[11:] for t in fires({"cron": expression}, "2026-01-01 23:59", "2026-01-02 23:59")]
    assert day == expected


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    def days(expression: str) -> list[str]:
        return [t[:10] for t in upcoming({"cron": expression}, "2026-02-01 00:00", 6)]

    # February 2026: Fridays are the 6th, 13th, 20th, 27th.
    assert days("0 0 13 * 5") == ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27", "2026-03-06",
                                  "2026-03-13"]
    assert days("0 0 13 * *") == ["2026-02-13", "2026-03-13", "2026-04-13", "2026-05-13", "2026-06-13",
                                  "2026-07-13"]
    assert days("0 0 * * 5")[:3] == ["2026-02-06", "2026-02-13", "2026-02-20"]
    # A day field starting with * counts as unrestricted (vixie): the odd days that are Fridays.
    assert days("0 0 */2 * 5") == ["2026-02-13", "2026-02-27", "2026-03-13", "2026-03-27", "2026-04-03",
                                   "2026-04-17"]
    # 1-31 is restricted by the text, so OR: every day.
    assert days("0 0 1-31 * 5")[:3] == ["2026-02-02", "2026-02-03", "2026-02-04"]


def test_slot_name_and_aware_times():
    assert slot_name(datetime(2026, 11, 23, 7, 0, tzinfo=ZoneInfo("Europe/Berlin"))) == "202611230600"
    schedule = parse_schedule({"cron": "0 6 * * *"})
    with pytest.raises(ValueError, match="no time zone"):
        schedule.next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        slot_name(datetime(2026, 1, 1))


def test_between_is_lazy_and_empty_when_reversed():
    minutes = parse_schedule({"cron": "* * * * *"})
    hundred_years = minutes.between(at("2026-01-01 00:00"), at("2126-01-01 00:00"))
    assert list(islice(hundred_years, 2)) == [at("2026-01-01 00:01"), at("2026-01-01 00:02")]
    assert list(minutes.between(at("2026-01-02 00:00"), at("2026-01-01 00:00"))) == []
    assert isinstance(minutes, Schedule) and minutes.zone == ZoneInfo("UTC")


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("schedule,error", [
    ({"cron": "0 25 * * *"}, "spec.schedule.cron: field 2 (hour) '25' is out of range 0-23"),
    ({"cron": "60 * * * *"}, "spec.schedule.cron: field 1 (minute) '60' is out of range 0-59"),
    ({"cron": "0 0 0 * *"}, "spec.schedule.cron: field 3 (day-of-month) '0' is out of range 1-31"),
    ({"cron": "0 0 * 13 *"}, "spec.schedule.cron: field 4 (month) '13' is out of range 1-12"),
    ({"cron": "0 0 * * 8"}, "spec.schedule.cron: field 5 (day-of-week) '8' is out of range 0-7"),
    ({"cron": "0 0 * * MON-XYZ"}, "spec.schedule.cron: field 5 (day-of-week) 'MON-XYZ': 'XYZ' is not a number "
                                  "or a name SUN-SAT"),
    ({"cron": "0 0 * FOO *"}, "spec.schedule.cron: field 4 (month) 'FOO': 'FOO' is not a number or a name JAN-DEC"),
    ({"cron": "*/0 * * * *"}, "spec.schedule.cron: field 1 (minute) '*/0' has step '0'; a step is a whole number "
                              "from 1"),
    ({"cron": "0 22-2 * * *"}, "spec.schedule.cron: field 2 (hour) '22-2' is a backwards range; write it as two, "
                               "e.g. 22-23,0-2"),
    ({"cron": "1,,2 * * * *"}, "spec.schedule.cron: field 1 (minute) '': '' is not a number"),
    ({"cron": "0 0 * *"}, "spec.schedule.cron: '0 0 * *' has 4 fields; a cron expression has 5 (minute hour "
                          "day-of-month month day-of-week) or is one of @yearly, @annually, @monthly, @weekly, "
                          "@daily, @midnight, @hourly"),
    ({"cron": "@reboot"}, "spec.schedule.cron: '@reboot' is not a supported macro; use one of @yearly, @annually, "
                          "@monthly, @weekly, @daily, @midnight, @hourly"),
    ({"cron": 5}, 'spec.schedule.cron: expected a string such as "0 6 * * 1-5", got 5'),
    ({"cron": "0 0 30 2 *"}, "spec.schedule.cron: day-of-month '30' never occurs in month '2', so the schedule "
                             "would never fire; choose days that exist in those months"),
    ({"cron": "0 0 31 4,6 *"}, "spec.schedule.cron: day-of-month '31' never occurs in month '4,6', so the "
                               "schedule would never fire; choose days that exist in those months"),
    ({"cron": "0 0 * * *", "recurrence": {"frequency": "Day"}}, "spec.schedule: has both cron and recurrence; "
                                                               "keep one"),
    ({"timeZone": "UTC"}, 'spec.schedule: needs cron (e.g. "0 6 * * 1-5") or recurrence '
                          "(e.g. {frequency: Day, hours: [6], minutes: [0]})"),
    ({"cron": "@daily", "timezone": "UTC"}, "spec.schedule.timezone: unknown field; did you mean timeZone?"),
    ({"cron": "@daily", "timeZone": "Europe/Berln"}, "spec.schedule.timeZone: 'Europe/Berln' is not a known time "
                                                    "zone; did you mean Europe/Berlin?"),
    ({"cron": "@daily", "startTime": "tomorrow"}, "spec.schedule.startTime: 'tomorrow' is not an ISO 8601 "
                                                  "date-time; write e.g. 2026-01-01T06:00:00 (wall clock in "
                                                  "timeZone) or 2026-01-01T05:00:00Z"),
    ({"cron": "@daily", "startTime": "2026-02-01T00:00:00Z", "endTime": "2026-01-01T00:00:00Z"},
     "spec.schedule.endTime: 2026-01-01T00:00:00Z is before startTime 2026-02-01T00:00:00Z; move endTime later "
     "or startTime earlier"),
    ({"recurrence": "daily"}, "spec.schedule.recurrence: expected a mapping such as {frequency: Day, hours: [6], "
                              "minutes: [0]}, got str"),
    ({"recurrence": {}}, "spec.schedule.recurrence.frequency: required; use one of Minute, Hour, Day, Week, Month"),
    ({"recurrence": {"frequency": "Daily"}}, "spec.schedule.recurrence.frequency: 'Daily' is not a frequency; use "
                                             "one of Minute, Hour, Day, Week, Month"),
    ({"recurrence": {"frequency": "Day", "interval": 0}}, "spec.schedule.recurrence.interval: 0 is not a whole "
                                                          "number from 1; it counts the days between fires"),
    ({"recurrence": {"frequency": "Day", "interval": True}}, "spec.schedule.recurrence.interval: True is not a "
                                                             "whole number from 1; it counts the days between fires"),
    ({"recurrence": {"frequency": "Day", "hours": [6, 24]}}, "spec.schedule.recurrence.hours: 24 is not valid; "
                                                             "use hours 0-23"),
    ({"recurrence": {"frequency": "Day", "minutes": 5}}, "spec.schedule.recurrence.minutes: expected a non-empty "
                                                         "list of minutes 0-59, got 5"),
    ({"recurrence": {"frequency": "Day", "weekDays": ["Monday"]}}, "spec.schedule.recurrence.weekDays: only "
                                                                   "applies to frequency Week; remove it or set "
                                                                   "frequency: Week"),
    ({"recurrence": {"frequency": "Week", "monthDays": [1]}}, "spec.schedule.recurrence.monthDays: only applies to "
                                                              "frequency Month; remove it or set frequency: Month"),
    ({"recurrence": {"frequency": "Hour", "hours": [1]}}, "spec.schedule.recurrence.hours: only applies to "
                                                          "frequency Day or Week or Month; remove it or set "
                                                          "frequency: Day"),
    ({"recurrence": {"frequency": "Minute", "minutes": [1]}}, "spec.schedule.recurrence.minutes: only applies to "
                                                              "frequency Hour or Day or Week or Month; remove it "
                                                              "or set frequency: Hour"),
    ({"recurrence": {"frequency": "Week", "weekDays": ["Mon", "Tue"]}}, "spec.schedule.recurrence.weekDays: 'Mon', "
                                                                       "'Tue' are not valid; use Monday, Tuesday, "
                                                                       "Wednesday, Thursday, Friday, Saturday, "
                                                                       "Sunday"),
    ({"recurrence": {"frequency": "Month", "monthDays": [0, 32]}}, "spec.schedule.recurrence.monthDays: 0, 32 are "
                                                                   "not valid; use days 1-31, or -1 for the last "
                                                                   "day"),
    ({"recurrence": {"frequency": "Day", "every": 2}}, "spec.schedule.recurrence.every: unknown field; known "
                                                       "fields: frequency, interval, hours, minutes, weekDays, "
                                                       "monthDays"),
    ([], "spec.schedule: expected a mapping with cron or recurrence, got list"),
])
def test_each_validation_error(schedule, error):
    assert errors_of(schedule) == [error]


def test_every_problem_is_reported_at_once():
    assert errors_of({
        "cron": "61 25 * * MON-XYZ", "timeZone": "Mars/Olympus", "startTime": "2026-02-01",
        "endTime": "2026-01-01", "extra": 1,
    }) == [
        "spec.schedule.extra: unknown field; known fields: cron, recurrence, timeZone, startTime, endTime",
        "spec.schedule.timeZone: 'Mars/Olympus' is not a known time zone; use an IANA name such as Europe/Berlin "
        "or UTC",
        "spec.schedule.cron: field 1 (minute) '61' is out of range 0-59",
        "spec.schedule.cron: field 2 (hour) '25' is out of range 0-23",
        "spec.schedule.cron: field 5 (day-of-week) 'MON-XYZ': 'XYZ' is not a number or a name SUN-SAT",
    ]  # naive start/end times cannot be placed without a zone: not compared
    recurrence_errors = errors_of({"recurrence": {"frequency": "Day", "interval": -1, "hours": [25],
                                                  "weekDays": ["Funday"]}})
    assert [e.split(":")[0] for e in recurrence_errors] == [
        "spec.schedule.recurrence.interval", "spec.schedule.recurrence.weekDays",
        "spec.schedule.recurrence.hours", "spec.schedule.recurrence.weekDays"]
    assert "invalid schedule:\n  spec.schedule.recurrence.interval" in str(ScheduleError(recurrence_errors))


# -- agreement with croniter ----------------------------------------------------------

_FIELD_RANGES = [(0, 59, None), (0, 23, None), (1, 31, None),
                 (1, 12, ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]),
                 (0, 6, ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])]


def _random_value(rng: random.Random, low: int, high: int, names: list[str] | None) -> tuple[int, str]:
    value = rng.randint(low, high)
    if names and rng.random() < 0.4:
        return value, rng.choice([str.upper, str.lower, str.title])(names[value - low])
    return value, str(value)


def _random_item(rng: random.Random, low: int, high: int, names: list[str] | None, dow: bool) -> str:
    kind = rng.choice(["value", "value", "range", "star-step", "range-step", "start-step"])
    if kind == "star-step":
        return f"*/{rng.randint(1, high - low + 1)}"
    first, first_text = _random_value(rng, low, high, names)
    if kind == "value":
        return "7" if dow and first == 0 and rng.random() < 0.3 else first_text  # 7 is Sunday too
    if kind == "start-step":
        return f"{first_text}/{rng.randint(1, high - low + 1)}"
    if first == high:
        return first_text
    # Not a range with equal ends: croniter 7 reads `5-5` (and `5-5/n`) as a wrap-around, the whole field.
    last, last_text = _random_value(rng, first + 1, high, names and names[first + 1 - low:])
    if dow and last == 6 and rng.random() < 0.3:
        last_text = "7"  # a range may end at 7; croniter reads "7-7" as every day, so not from 0
        if first == 0:
            first_text = "1"
    step = f"/{rng.randint(1, high - low + 1)}" if kind == "range-step" else ""
    return f"{first_text}-{last_text}{step}"


def _random_field(rng: random.Random, index: int) -> str:
    low, high, names = _FIELD_RANGES[index]
    if rng.random() < (0.5 if index >= 2 else 0.25):
        return "*"
    return ",".join(_random_item(rng, low, high, names, index == 4) for _ in range(rng.choice([1, 1, 1, 2, 3])))


def _random_expressions(count: int, seed: int = 20261123) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(_random_field(rng, i) for i in range(5)) for _ in range(count)]


def _croniter_reads_days_like_vixie(expression: str) -> bool:
    """Whether croniter joins day-of-month and day-of-week as vixie does.

    Vixie ORs the two day fields when neither *starts with* `*`. croniter ORs them unless
    its expansion of one is `*`, which it makes of `*` and of some fields that cover
    every day (`0-6`, `*/1` in day-of-week) but not of others (`1-31`, `*/1` in
    day-of-month). They part on `*/2` (vixie AND, croniter OR), `1-31` or `0-6` with a
    restricted other field, and the like; such expressions are left out.
    """
    fields = expression.split()
    vixie_or = not fields[2].startswith("*") and not fields[4].startswith("*")
    expanded = croniter(expression).expanded
    croniter_or = expanded[2] != ["*"] and expanded[4] != ["*"]
    return vixie_or == croniter_or


def _comparable(expressions: list[str]) -> list[str]:
    kept = []
    for expression in expressions:
        try:
            parse_schedule({"cron": expression})
        except ScheduleError:
            continue  # a day that never occurs in the months given (rejected here, croniter raises)
        if _croniter_reads_days_like_vixie(expression):
            kept.append(expression)
    return kept


def test_random_expressions_agree_with_croniter_in_utc():
    rng = random.Random(7)
    expressions = _comparable(_random_expressions(3000))
    assert len(expressions) > 2400  # the exclusions stay few
    for expression in expressions:
        start = at("2000-01-01 00:00") + timedelta(seconds=rng.randrange(40 * 365 * 86400))
        reference = croniter(expression, start)
        expected = [reference.get_next(datetime) for _ in range(5)]
        assert parse_schedule({"cron": expression}).upcoming(start, 5) == expected, (expression, start)


@pytest.mark.parametrize("zone_name,summer_only", [("Asia/Kolkata", False), ("Europe/Berlin", True)])
def test_random_expressions_agree_with_croniter_in_a_zone(zone_name, summer_only):
    """Kolkata (+05:30) has had no DST since 1945; in Berlin, June to September only."""
    zone, rng = ZoneInfo(zone_name), random.Random(zone_name)
    for expression in _comparable(_random_expressions(600, seed=len(zone_name)))[:400]:
        year = rng.randint(2000, 2039)
        start = datetime(year, rng.choice([6] if summer_only else range(1, 13)), 1, tzinfo=zone)
        start += timedelta(seconds=rng.randrange(28 * 86400))
        reference = croniter(expression, start)
        expected = [reference.get_next(datetime) for _ in range(5)]
        if summer_only:  # CEST lasts until the last Sunday of October
            expected = [t for t in expected if t < datetime(year, 10, 1, tzinfo=zone)]
        got = parse_schedule({"cron": expression, "timeZone": zone_name}).upcoming(start, len(expected))
        assert got == expected, (expression, start)
