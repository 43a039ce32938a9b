"""The examples and the command line: validate, schedule next, and a dated output from a local run."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from parallelrun.cli import main
from parallelrun.runner.pipelines.local import run_pipeline
from parallelrun.runner.schedules.local import LocalScheduler
from parallelrun.runner.schedules.spec import load_schedule

from .schedules import schedule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples/schedules").glob("*.yaml"))


def test_there_are_three_examples():
    assert [p.name for p in EXAMPLES] == ["data-arrival.yaml", "nightly-scoring.yaml", "weekly-retraining.yaml"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_validates(example, capsys):
    assert main(["validate", str(example)]) == 0
    assert "valid PipelineSchedule" in capsys.readouterr().out


def next_times(example: str, n: int) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "parallelrun.cli", "schedule", "next", str(ROOT / example), "-n",
                          str(n)], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return out.splitlines()


def test_schedule_next_shows_the_zone_and_utc():
    nightly = next_times("examples/schedules/nightly-scoring.yaml", 200)  # across a DST change, whenever run
    assert len(nightly) == 200
    # 02:30 each night; on the night of the spring change 02:30 does not exist: 03:00 CEST (01:00Z).
    pattern = r"\w{3} \d{4}-\d\d-\d\d (02:30 CES?T|03:00 CEST) \(Europe/Berlin\)   \d{4}-\d\d-\d\dT0[01]:[03]0:00Z UTC$"
    assert [line for line in nightly if not re.match(pattern, line)] == []
    assert {"CET" in line for line in nightly} == {True, False}  # winter and summer times
    weekly = next_times("examples/schedules/weekly-retraining.yaml", 5)
    assert all(line.startswith("Mon ") and " 04:00 " in line for line in weekly)


def test_schedule_next_of_a_trigger_only_schedule(capsys):
    assert main(["schedule", "next", str(ROOT / "examples/schedules/data-arrival.yaml")]) == 0
    assert capsys.readouterr().out.strip() == "iris-arrivals: no schedule; runs on data: az://incoming/iris/"


def test_invalid_schedule_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: parallelrun.dev/v1alpha1\nkind: PipelineSchedule\nmetadata: {name: x}\n"
                   "spec: {schedule: {cron: '0 6 * * 8'}, template: {spec: {workdir: w/, steps: []}}}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "spec.schedule.cron: " in err and "spec.template.spec.steps" in err


def test_a_local_run_writes_its_slot_into_a_dated_file(tmp_path):
    """The run gets the slot as ${{schedule.scheduledTime}}, through the real local pipeline runner."""
    template = {"workdir": str(tmp_path / "work"), "steps": [{"name": "write", "container": {
        "image": "busybox", "command": ["sh", "-c", 'echo scored > "$1/out_$2.txt"', "write", str(tmp_path),
                                        "${{schedule.scheduledTime}}"]}}]}
    spec = load_schedule(schedule(schedule={"cron": "30 2 * * *", "timeZone": "Europe/Berlin"},
                                  template_spec=template), base_dir=str(tmp_path))
    now = [datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)]
    scheduler = LocalScheduler(spec, lambda doc, name: run_pipeline(doc, base_dir=str(tmp_path), name=name),
                               now=lambda: now[0], log=lambda _: None)
    scheduler.look()
    now[0] = datetime(2026, 7, 1, 0, 30, 5, tzinfo=timezone.utc)
    scheduler.look()
    assert (tmp_path / "out_2026-07-01T00:30:00Z.txt").read_text() == "scored\n"


def test_schedule_run_in_the_foreground_stops_on_sigterm(tmp_path):
    import signal

    import yaml

    doc = schedule(template_spec={"workdir": str(tmp_path / "work"), "steps": [{"name": "a", "container": {
        "image": "busybox", "command": ["true"]}}]})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    process = subprocess.Popen([sys.executable, "-m", "parallelrun.cli", "schedule", "run", str(path)], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)
    header = process.stderr.readline()
    assert header.startswith("nightly: * * * * * UTC; state in ") and header.rstrip().endswith("Ctrl-C to stop")
    process.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT is ignored where tests run in the background)
    rest = process.communicate(timeout=30)[1]
    assert process.returncode == 143 and "no slot is run twice" in rest


def test_relative_workdir_and_data_uri_are_taken_from_the_file_wherever_it_runs(tmp_path, monkeypatch):
    """`schedule run` from another folder keeps its state, manifests and runs beside the file, and
    its data runs score the files that arrived there (a relative uri), not paths of the shell's folder."""
    import yaml

    from parallelrun.runner.schedules.spec import load_schedule_file

    folder, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (folder / "incoming").mkdir(parents=True)
    elsewhere.mkdir()
    doc = schedule(schedule=None, trigger={"dataArrival": {"uri": "incoming/", "pattern": "*.txt",
                                                           "pollIntervalSeconds": 60, "settleSeconds": 1}},
                   template_spec={"workdir": "work/", "steps": [{"name": "copy", "container": {
                       "image": "busybox", "command": ["sh", "-c", 'cat $(cat "$1") > "$2"', "copy",
                                                       "${{trigger.manifest}}", "${{run.workdir}}/scored.txt"]}}]})
    (folder / "arrivals.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(elsewhere)
    spec = load_schedule_file("../project/arrivals.yaml")
    assert spec.template["spec"]["workdir"] == f"{folder}/work/" and spec.trigger.uri == f"{folder}/incoming/"
    now = [datetime.now(timezone.utc)]
    phases = []

    def run(doc, name):
        phases.append(run_pipeline(doc, base_dir=spec.base_dir, name=name))
        return phases[-1]

    scheduler = LocalScheduler(spec, run, now=lambda: now[0], log=lambda _: None)
    assert scheduler.state_path == f"{folder}/work/_parallelrun/schedules/nightly/state.json"
    scheduler.look()  # the schedule starts counting
    (folder / "incoming/a.txt").write_text("scored a\n")
    now[0] += timedelta(minutes=2)
    scheduler.look()
    assert phases == ["Succeeded"]
    [out] = (folder / "work").glob("nightly-data-*/scored.txt")
    assert out.read_text() == "scored a\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing where the shell stands


def test_schedule_run_from_another_folder_keeps_its_state_beside_the_file(tmp_path):
    import signal

    import yaml

    (tmp_path / "project").mkdir()
    doc = schedule(template_spec={"workdir": "work", "steps": [{"name": "a", "container": {
        "image": "busybox", "command": ["true"]}}]})
    (tmp_path / "project/s.yaml").write_text(yaml.safe_dump(doc))
    process = subprocess.Popen([sys.executable, "-m", "parallelrun.cli", "schedule", "run", "project/s.yaml"],
                               cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    header = process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert f"state in {tmp_path}/project/work/_parallelrun/schedules/nightly/state.json;" in header
