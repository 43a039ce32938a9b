"""Loading a PipelineSchedule: every invalid field with its fix; the template checked as the run it becomes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from parallelrun.runner.api import ANNOTATION_SCHEDULED_TIME as SCHEDULED_TIME
from parallelrun.runner.api import LABEL_SCHEDULE
from parallelrun.runner.pipelines.spec import load_pipeline
from parallelrun.runner.problems import DNS_NAME
from parallelrun.runner.schedules.runs import MAX_RUN_NAME, build_run, data_run_name, run_now_name, slot_run_name
from parallelrun.runner.schedules.spec import ScheduleSpecError, load_schedule

from .schedules import PIPELINE_SPEC, data_template, schedule

SLOT = datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc)


def errors_of(doc) -> list[str]:
    with pytest.raises(ScheduleSpecError) as raised:
        load_schedule(doc)
    return raised.value.errors


def test_defaults():
    spec = load_schedule(schedule())
    assert (spec.name, spec.concurrency, spec.missed_runs, spec.max_missed_runs, spec.starting_deadline) == \
        ("nightly", "Forbid", "RunLatest", 10, None)
    assert (spec.successful_history, spec.failed_history, spec.suspend, spec.trigger) == (3, 1, False, None)
    assert spec.schedule_text == "* * * * * UTC"


def test_schedule_is_optional():
    spec = load_schedule(schedule(schedule=None))
    assert spec.schedule is None and spec.schedule_text == "run-now only"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("concurrencyPolicy", "Skip", "spec.concurrencyPolicy: 'Skip' is not allowed; use one of Forbid, Allow, Replace"),
    ("missedRuns", "All", "spec.missedRuns: 'All' is not allowed; use one of RunLatest, RunAll, Skip"),
    ("maxMissedRuns", 0, "spec.maxMissedRuns: 0 is not a whole number from 1; write e.g. 10"),
    ("successfulRunsHistoryLimit", -1, "spec.successfulRunsHistoryLimit: -1 is not a whole number from 0; "
                                       "write e.g. 3"),
    ("suspend", "yes", "spec.suspend: 'yes' is not allowed; use one of False, True"),
    ("jobTemplate", {}, "spec.jobTemplate: unknown field; did you mean template?"),
])
def test_invalid_fields_are_named_with_the_fix(field, value, message):
    assert errors_of(schedule(**{field: value})) == [message]


def test_every_problem_at_once_with_the_template_checked_as_a_pipeline_run():
    bad_template = {"workdir": "/w/", "steps": [{"name": "a", "container": {"image": "x", "command": [
        "echo", "${{parameters.nope}}"]}}]}
    errors = errors_of(schedule(schedule={"cron": "61 * * * *"}, concurrencyPolicy="x", template_spec=bad_template))
    assert errors[0].startswith("spec.schedule.cron: ")
    assert errors[1].startswith("spec.concurrencyPolicy: ")
    assert errors[2].startswith("spec.template.spec.steps[0].container.command[1]: ${{parameters.nope}} names no "
                                "parameter")


def test_manifest_needs_a_data_trigger_and_no_schedule():
    assert errors_of(schedule(template_spec=data_template(), schedule=None)) == [
        "spec.template.spec: uses ${{trigger.manifest}}, which only trigger.dataArrival sets; add "
        "spec.trigger.dataArrival or remove the expression"]
    trigger = {"dataArrival": {"uri": "/in/", "settleSeconds": 5}}
    assert errors_of(schedule(template_spec=data_template(), trigger=trigger))[0].startswith("spec.schedule: ")
    spec = load_schedule(schedule(template_spec=data_template(), trigger=trigger, schedule=None))
    assert (spec.trigger.uri, spec.trigger.pattern, spec.trigger.poll_seconds, spec.trigger.settle_seconds) == \
        ("/in/", "*", 300, 5)
    assert spec.schedule_text == "on data: /in/"


def test_bad_trigger():
    assert errors_of(schedule(trigger={"dataArrival": {"pollIntervalSeconds": 0}})) == [
        "spec.trigger.dataArrival.uri: required; the folder to watch, e.g. az://incoming/",
        "spec.trigger.dataArrival.pollIntervalSeconds: 0 is not a whole number from 1; write e.g. 300"]


def test_the_run_gets_the_slot_not_the_creation_time():
    spec = load_schedule(schedule())
    run = build_run(spec, slot_run_name(spec.name, SLOT), SLOT, "schedule")
    assert run["metadata"]["name"] == "nightly-202603290130"
    assert run["spec"]["steps"][0]["container"]["command"][2] == "echo 2026-03-29T01:30:00Z ${{parameters.day}}"
    assert run["metadata"]["annotations"][SCHEDULED_TIME] == "2026-03-29T01:30:00Z"
    assert run["metadata"]["labels"][LABEL_SCHEDULE] == "nightly"
    assert "${{schedule" not in str(run)


def test_the_runs_inherit_the_templates_queue_and_priority():
    """Kueue and priorities reach a schedule's runs through its template, each step of them inherits
    (tests/operator/test_operator_kueue.py); a bad name is found when the schedule is applied."""
    placed = dict(PIPELINE_SPEC, queueName="team-queue", priorityClassName="batch-low")
    run = build_run(load_schedule(schedule(template_spec=placed)), "nightly-1", SLOT, "schedule")
    spec = load_pipeline(run)
    assert (spec.queue_name, spec.priority_class_name) == ("team-queue", "batch-low")
    errors = errors_of(schedule(template_spec=dict(PIPELINE_SPEC, queueName="Team Queue", priorityClassName=3)))
    assert any("spec.queueName" in e and "'Team Queue' is not a valid name" in e for e in errors), errors
    assert any("spec.priorityClassName" in e and "expected a non-empty string, got 3" in e for e in errors), errors


def test_long_schedule_names_give_valid_distinct_run_names():
    long_a, long_b = "a" * 240 + "-x", "a" * 240 + "-y"
    names = {f(n, arg) for n in (long_a, long_b) for f, arg in
             ((slot_run_name, SLOT), (run_now_name, "1"), (data_run_name, "w"))}
    assert len(names) == 6
    assert all(len(n) <= MAX_RUN_NAME and DNS_NAME.match(n) for n in names)
    assert slot_run_name("a" * 39, SLOT) == "a" * 39 + "-202603290130"  # fits: kept whole
    assert slot_run_name("a" * 40, SLOT).startswith("a" * 33 + "-")


def test_names_are_deterministic():
    assert run_now_name("s", "1700000000") == run_now_name("s", "1700000000") != run_now_name("s", "1700000001")
