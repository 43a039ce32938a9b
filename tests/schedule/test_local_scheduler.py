"""`parallelrun schedule run`'s scheduler: slots run once across restarts, data arrival hands each file once."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from parallelrun.runner.schedules.local import LocalScheduler
from parallelrun.runner.schedules.spec import load_schedule

from .schedules import data_template, schedule

T0 = datetime(2026, 1, 5, 6, 0, 30, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


class Clock:
    def __init__(self):
        self.t = T0

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.t += timedelta(seconds=seconds)


class Crash(BaseException):
    """The process dies in the middle of a run."""


def test_slots_run_once_across_a_crash_mid_run(tmp_path):
    spec = load_schedule(schedule(template_spec={**schedule()["spec"]["template"]["spec"],
                                                 "workdir": str(tmp_path / "work")}))
    clock, ran = Clock(), []

    def run(doc, name):
        ran.append((name, doc["spec"]["steps"][0]["container"]["command"][2].split()[1]))
        if len(ran) == 2:
            raise Crash()
        return "Succeeded"

    scheduler = LocalScheduler(spec, run, now=clock.now, sleep=clock.sleep, log=lambda _: None)
    scheduler.look()  # starts counting
    clock.t += MIN
    scheduler.look()
    clock.t += MIN
    with pytest.raises(Crash):
        scheduler.look()
    clock.t += 10 * MIN  # down for 10 minutes: RunLatest runs the latest slot, the others reported
    log: list[str] = []
    LocalScheduler(spec, run, now=clock.now, sleep=clock.sleep, log=log.append).look()
    assert ran == [("nightly-202601050601", "2026-01-05T06:01:00Z"), ("nightly-202601050602", "2026-01-05T06:02:00Z"),
                   ("nightly-202601050602", "2026-01-05T06:02:00Z"), ("nightly-202601050612", "2026-01-05T06:12:00Z")]
    assert log[0] == "resuming nightly-202601050602 (interrupted)"
    assert sum("MissedSchedule" in line for line in log) == 9
    state = json.loads((tmp_path / "work/_parallelrun/schedules/nightly/state.json").read_text())
    assert [(r["name"], r["phase"]) for r in state["runs"]][-1] == ("nightly-202601050612", "Succeeded")


def test_run_forever_sleeps_until_the_next_slot(tmp_path):
    spec = load_schedule(schedule(schedule={"cron": "*/15 * * * *"}, template_spec={
        **schedule()["spec"]["template"]["spec"], "workdir": str(tmp_path)}))
    clock, ran = Clock(), []
    LocalScheduler(spec, lambda doc, name: ran.append(name) or "Succeeded", now=clock.now, sleep=clock.sleep,
                   log=lambda _: None).run_forever(looks=16)  # a look a minute, and one at 06:15:00 sharp
    assert ran == ["nightly-202601050615"] and clock.t == datetime(2026, 1, 5, 6, 16, tzinfo=timezone.utc)


def test_data_arrival_hands_each_settled_file_to_one_run(tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    spec = load_schedule(schedule(schedule=None, template_spec=data_template(str(tmp_path / "work")),
                                  trigger={"dataArrival": {"uri": str(incoming), "pattern": "*.csv",
                                                           "pollIntervalSeconds": 60, "settleSeconds": 30}}))
    clock, handed = Clock(), []

    def run(doc, name):
        manifest = doc["spec"]["steps"][0]["container"]["command"][1]
        handed.append(sorted(os.path.basename(line) for line in open(manifest).read().split()))
        return "Succeeded"

    def arrive(name, age):
        path = incoming / name
        path.write_text("x\n")
        stamp = (clock.t - age).timestamp()
        os.utime(path, (stamp, stamp))

    scheduler = LocalScheduler(spec, run, now=clock.now, sleep=clock.sleep, log=lambda _: None)
    arrive("old.csv", timedelta(hours=1))  # before the schedule existed: not new
    scheduler.look()
    clock.t += MIN
    arrive("a.csv", timedelta(seconds=40))
    arrive("b.csv", timedelta(seconds=31))
    arrive("c.csv", timedelta(seconds=5))  # still being written: not settled
    arrive("skip.txt", timedelta(seconds=40))
    scheduler.look()
    clock.t += MIN
    scheduler = LocalScheduler(spec, run, now=clock.now, sleep=clock.sleep, log=lambda _: None)  # a restart
    scheduler.look()
    clock.t += MIN
    scheduler.look()  # nothing new: no run
    assert handed == [["a.csv", "b.csv"], ["c.csv"]]


def test_a_failed_data_run_gives_its_files_to_the_next_run(tmp_path):
    """Through the real local pipeline runner: a data run that fails consumes none of its files; the
    next poll offers them again with the new ones, across a restart, until a run that took them
    succeeds; none is skipped, none is in two runs at once, each is scored once."""
    from parallelrun.runner.pipelines.local import run_pipeline

    incoming, scored = tmp_path / "in", tmp_path / "scored.txt"
    incoming.mkdir()
    failures = tmp_path / "failures"
    failures.write_text("2")  # the first two runs fail
    step = ('n=$(cat "$3"); if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$3"; exit 1; fi; '
            'for f in $(cat "$1"); do cat "$f" >> "$2"; done')
    template = {"workdir": str(tmp_path / "work"), "steps": [{"name": "score", "container": {
        "image": "busybox", "command": ["sh", "-c", step, "score", "${{trigger.manifest}}", str(scored),
                                        str(failures)]}}]}
    spec = load_schedule(schedule(schedule=None, template_spec=template, trigger={"dataArrival": {
        "uri": str(incoming), "pattern": "*.csv", "pollIntervalSeconds": 60, "settleSeconds": 30}}))
    clock, handed = Clock(), []

    def run(doc, name):
        manifest = doc["spec"]["steps"][0]["container"]["command"][4]
        handed.append((name, sorted(os.path.basename(line) for line in open(manifest).read().split())))
        return run_pipeline(doc, base_dir=str(tmp_path), name=name)

    def arrive(name):
        (incoming / name).write_text(f"{name}\n")
        stamp = (clock.t - timedelta(seconds=40)).timestamp()
        os.utime(incoming / name, (stamp, stamp))

    def scheduler():
        return LocalScheduler(spec, run, now=clock.now, sleep=clock.sleep, log=log.append)

    log: list[str] = []
    scheduler().look()
    clock.t += MIN
    arrive("a.csv")
    arrive("b.csv")
    scheduler().look()  # fails
    clock.t += MIN
    arrive("c.csv")
    scheduler().look()  # a restart between: a and b again, with c; fails again
    clock.t += MIN
    scheduler().look()  # a, b and c once more, alone: succeeds
    clock.t += MIN
    scheduler().look()  # nothing left
    assert [files for _, files in handed] == [["a.csv", "b.csv"], ["a.csv", "b.csv", "c.csv"],
                                              ["a.csv", "b.csv", "c.csv"]]
    assert len({name for name, _ in handed}) == 3  # three runs, none adopted in place of another
    assert sorted(scored.read_text().split()) == ["a.csv", "b.csv", "c.csv"]
    assert sum("go to the next data run" in line for line in log) == 2
    state = json.loads((tmp_path / "work/_parallelrun/schedules/nightly/state.json").read_text())
    assert [r["phase"] for r in state["runs"]] == ["Failed", "Succeeded"][-len(state["runs"]):]
    assert state["watermark"]["again"] == []
