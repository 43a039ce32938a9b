"""The pure policy engine: slots, missed runs, deadlines, concurrency, history, run-now, spec change."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from parallelrun.runner.schedules.policy import MISSED_EVENTS, Firing, Memory, Run, decide
from parallelrun.runner.schedules.spec import load_schedule

from .schedules import data_template, schedule

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


def spec(**fields):
    return load_schedule(schedule(**fields))


def slots(decision):
    return [f.name.rsplit("-", 1)[1] for f in decision.create]


def test_a_new_schedule_counts_from_its_creation():
    d = decide(spec(), Memory(), [], T0 + timedelta(seconds=30), generation=1, created=T0 - timedelta(seconds=30))
    assert slots(d) == ["202601050600"]
    assert d.memory == Memory(T0 + timedelta(seconds=30), 1, None)
    assert d.upcoming == (T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN)


def test_one_slot_per_look_on_time():
    memory = Memory(T0 - MIN, 1)
    d = decide(spec(), memory, [], T0 + timedelta(seconds=1), generation=1)
    assert [(f.name, f.slot, f.trigger) for f in d.create] == [("nightly-202601050600", T0, "schedule")]
    again = decide(spec(), d.memory, [], T0 + timedelta(seconds=2), generation=1)
    assert again.create == () and again.notices == ()


def test_restart_between_create_and_memory_adopts():
    memory = Memory(T0 - MIN, 1)
    run = Run("nightly-202601050600", "schedule", T0, "Running")
    d = decide(spec(), memory, [run], T0 + timedelta(seconds=1), generation=1)
    assert d.create == () and d.adopted == ("nightly-202601050600",) and d.notices == ()


@pytest.mark.parametrize(("policy", "extra", "expected_runs", "dropped"), [
    ("RunLatest", {}, ["202601050800"], 24),
    ("RunAll", {"maxMissedRuns": 3}, ["202601050750", "202601050755", "202601050800"], 22),
    ("RunAll", {"maxMissedRuns": 30}, [f"20260105{h:02d}{m:02d}" for h in (6, 7) for m in range(0, 60, 5)]
     + ["202601050800"], 0),
    ("Skip", {}, [], 25),
])
def test_missed_runs_after_downtime(policy, extra, expected_runs, dropped):
    """Every missed slot, run late or dropped, is an Event and counts in the metric."""
    # Down from 06:00 to 08:01:30: 25 slots of */5, the last one 90 s late.
    d = decide(spec(missedRuns=policy, concurrencyPolicy="Allow", schedule={"cron": "*/5 * * * *"}, **extra),
               Memory(T0 - MIN, 1), [], T0 + 121 * MIN + timedelta(seconds=30), generation=1)
    assert slots(d) == expected_runs and d.missed == 25
    reported = [n.message for n in d.notices if n.reason == "MissedSchedule"]
    late = [m for m in reported if ": run late as " in m]
    assert late == [f"slot {datetime.strptime(s, '%Y%m%d%H%M'):%Y-%m-%dT%H:%M:00Z} missed: run late as nightly-{s} "
                    f"(missedRuns {policy})" for s in expected_runs]
    one_by_one = min(dropped, MISSED_EVENTS)
    summed = dropped - one_by_one
    assert len(reported) == len(late) + one_by_one + (1 if summed else 0)  # none hidden
    if dropped:
        assert reported[0].startswith("slot 2026-01-05T06:00:00Z missed: ") and reported[0] not in late
    if summed:
        assert reported[-1].startswith(f"{summed} more slots missed, from ")


def test_a_slot_seen_late_is_missed_though_it_runs():
    """Down across one slot: it runs late, and is reported and counted as missed."""
    for policy in ("RunLatest", "RunAll"):
        d = decide(spec(missedRuns=policy, schedule={"cron": "17 21 * * *"}), Memory(T0, 1), [],
                   T0.replace(hour=21, minute=30), generation=1)
        assert slots(d) == ["202601052117"] and d.missed == 1
        assert [n.message for n in d.notices] == [f"slot 2026-01-05T21:17:00Z missed: run late as "
                                                  f"nightly-202601052117 (missedRuns {policy})"]
    d = decide(spec(missedRuns="Skip", schedule={"cron": "17 21 * * *"}), Memory(T0, 1), [],
               T0.replace(hour=21, minute=30), generation=1)
    assert slots(d) == [] and d.missed == 1 and [n.reason for n in d.notices] == ["MissedSchedule"]


def test_a_slot_on_time_is_not_missed():
    d = decide(spec(missedRuns="RunAll"), Memory(T0 - MIN, 1), [], T0 + timedelta(seconds=59), generation=1)
    assert slots(d) == ["202601050600"] and d.missed == 0 and d.notices == ()


def test_a_slot_on_time_supersedes_missed_ones_with_run_latest():
    d = decide(spec(), Memory(T0 - MIN, 1), [], T0 + 5 * MIN + timedelta(seconds=10), generation=1)
    assert slots(d) == ["202601050605"] and d.missed == 5


def test_starting_deadline():
    d = decide(spec(startingDeadlineSeconds=30, missedRuns="RunAll", concurrencyPolicy="Allow"),
               Memory(T0 - MIN, 1), [], T0 + MIN + timedelta(seconds=40), generation=1)
    assert slots(d) == [] and d.missed == 2
    assert all("startingDeadlineSeconds (30)" in n.message for n in d.notices)


def test_no_limit_on_missed_slots():
    """CronJob gives up after 100 missed slots; a year of minutes is reported and the latest runs."""
    d = decide(spec(), Memory(T0 - MIN, 1), [], T0 + timedelta(days=365, seconds=30), generation=1)
    assert slots(d) == ["202701050600"] and d.missed == 365 * 1440


def test_spec_change_fires_nothing_and_counts_from_now():
    memory = Memory(T0 - 10 * MIN, 1)
    d = decide(spec(schedule={"cron": "*/5 * * * *"}), memory, [], T0 + timedelta(seconds=5), generation=2)
    assert d.create == () and d.missed == 0
    assert [n.reason for n in d.notices] == ["SpecChanged"]
    assert d.memory.handled_until == T0 + timedelta(seconds=5) and d.memory.generation == 2


def test_suspend_lets_slots_pass_but_run_now_works():
    d = decide(spec(suspend=True), Memory(T0 - 10 * MIN, 1), [], T0, generation=1, run_now="1")
    assert [f.trigger for f in d.create] == ["manual"] and d.upcoming == () and d.missed == 0
    assert d.memory.handled_until == T0


def test_run_now_fires_once_per_value():
    d = decide(spec(schedule=None), Memory(T0, 1), [], T0 + MIN, generation=1, run_now="a")
    assert [(f.trigger, f.slot) for f in d.create] == [("manual", T0 + MIN)] and d.memory.run_now == "a"
    assert decide(spec(schedule=None), d.memory, [], T0 + 2 * MIN, generation=1, run_now="a").create == ()
    assert len(decide(spec(schedule=None), d.memory, [], T0 + 2 * MIN, generation=1, run_now="b").create) == 1


def test_run_now_on_a_data_schedule_polls():
    s = spec(schedule=None, template_spec=data_template(), trigger={"dataArrival": {"uri": "/in/"}})
    d = decide(s, Memory(T0, 1), [], T0, generation=1, run_now="a")
    assert d.poll_now and d.create == ()


ACTIVE = Run("nightly-202601050559", "schedule", T0 - MIN, "Running", T0 - MIN)


def test_forbid_skips_while_a_run_is_active():
    d = decide(spec(), Memory(T0 - MIN, 1), [ACTIVE], T0, generation=1)
    assert d.create == () and d.delete == ()
    assert [n.message for n in d.notices] == ["slot 2026-01-05T06:00:00Z skipped: run nightly-202601050559 is "
                                              "still active (concurrencyPolicy Forbid)"]


def test_allow_runs_beside():
    assert slots(decide(spec(concurrencyPolicy="Allow"), Memory(T0 - MIN, 1), [ACTIVE], T0, generation=1)) == \
        ["202601050600"]


def test_replace_deletes_the_active_run():
    d = decide(spec(concurrencyPolicy="Replace"), Memory(T0 - MIN, 1), [ACTIVE], T0, generation=1)
    assert slots(d) == ["202601050600"] and d.delete == ("nightly-202601050559",)


def test_replace_of_several_due_at_once_starts_the_last():
    d = decide(spec(concurrencyPolicy="Replace", missedRuns="RunAll"), Memory(T0 - 3 * MIN, 1), [],
               T0 + timedelta(seconds=30), generation=1)
    assert slots(d) == ["202601050600"] and sum(n.reason == "Skipped" for n in d.notices) == 2


def test_data_is_held_not_skipped_while_a_run_is_active():
    s = spec(schedule=None, template_spec=data_template(), trigger={"dataArrival": {"uri": "/in/"}},
             concurrencyPolicy="Replace")
    d = decide(s, Memory(T0, 1), [ACTIVE], T0, generation=1, data=Firing("nightly-data-x", T0, "data"))
    assert d.create == () and d.delete == () and d.data_held


def test_history_limits_delete_the_oldest_finished_runs():
    runs = [Run(f"r{i}", "schedule", T0 + i * MIN, phase, T0 + i * MIN)
            for i, phase in enumerate(["Succeeded", "Failed", "Succeeded", "Succeeded", "Failed", "Succeeded"])]
    d = decide(spec(successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1, schedule=None), Memory(T0, 1), runs,
               T0, generation=1)
    assert sorted(d.delete) == ["r0", "r1", "r2"]


def test_dst_fall_back_fires_once():
    s = spec(schedule={"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}, missedRuns="RunAll")
    start = datetime(2026, 10, 24, 12, 0, tzinfo=timezone.utc)
    fired = []
    memory = Memory(start, 1)
    for minute in range(0, 2 * 24 * 60, 1):
        d = decide(s, memory, [], start + minute * MIN, generation=1)
        fired += [f.slot for f in d.create]
        memory = d.memory
    assert fired == [datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc), datetime(2026, 10, 26, 1, 30, tzinfo=timezone.utc)]
