"""Load a PipelineSchedule: the schedule, the trigger, the policies and the run template.

`load_schedule` takes the resource a user would `kubectl apply` and reports every
problem as a "path: problem; fix" line of one ScheduleSpecError. The template is
checked as the PipelineRun it becomes (`runs.build_run` with a sample slot), so an
invalid template is found when the schedule is applied, not at its first firing.

Relative paths are taken from `base_dir` (the file's folder), `template.spec.workdir`
and `trigger.dataArrival.uri` included, as a PipelineRun's are: where the schedule is
started from makes no difference.

`${{schedule.scheduledTime}}` and `${{trigger.manifest}}` are substituted as text into
the template when a run is created (they are known then); a PipelineRun never carries
them. A template that takes `${{trigger.manifest}}` needs `trigger.dataArrival` and no
`schedule`: its runs are made by arriving files (run-now polls at once).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, overload

from ..api import PIPELINE_SCHEDULE
from ..pipelines.expressions import locate
from ..pipelines.spec import API_VERSION, ComponentResolver, PipelineSpecError, load_pipeline
from ..pipelines.uris import join_uri
from ..problems import DNS_NAME, lines, unknown_fields
from ..spec import SpecError, read_yaml
from .firetimes import Schedule, ScheduleError, parse_schedule

KIND = PIPELINE_SCHEDULE.kind
POLICIES = ("Forbid", "Allow", "Replace")
MISSED_RUNS = ("RunLatest", "RunAll", "Skip")
_SPEC_FIELDS = ("schedule", "trigger", "suspend", "concurrencyPolicy", "startingDeadlineSeconds", "missedRuns",
                "maxMissedRuns", "successfulRunsHistoryLimit", "failedRunsHistoryLimit", "template")
_TRIGGER_FIELDS = ("dataArrival",)
_ARRIVAL_FIELDS = ("uri", "pattern", "pollIntervalSeconds", "settleSeconds")
_TEMPLATE_FIELDS = ("metadata", "spec")
_METADATA_FIELDS = ("labels", "annotations")


class ScheduleSpecError(SpecError):
    """An invalid PipelineSchedule; `.errors` has one "path: problem; fix" line each."""

    what = KIND


@dataclass(frozen=True)
class DataArrival:
    uri: str
    pattern: str = "*"
    poll_seconds: int = 300
    settle_seconds: int = 60


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    namespace: str | None
    schedule: Schedule | None  # None: runs only when triggered
    schedule_text: str  # for display: the cron expression, the recurrence, or the polled URI
    template: Mapping[str, Any]  # {metadata: {labels, annotations}, spec: <PipelineRun spec>}
    trigger: DataArrival | None = None
    suspend: bool = False
    concurrency: str = "Forbid"
    starting_deadline: int | None = None  # seconds
    missed_runs: str = "RunLatest"
    max_missed_runs: int = 10
    successful_history: int = 3
    failed_history: int = 1
    base_dir: str | None = None
    time_zone: str = "UTC"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)  # spec as written

    @property
    def uses_manifest(self) -> bool:
        return any(ref.key == "trigger.manifest" for _, ref in locate(self.template.get("spec")))


def load_schedule(doc: Any, base_dir: str | None = None, components: ComponentResolver | None = None) -> ScheduleSpec:
    """Validate a PipelineSchedule resource; raise ScheduleSpecError with all its problems.

    `components` loads the template's component files (as load_pipeline's does)."""
    if not isinstance(doc, dict):
        raise ScheduleSpecError([f"resource: expected a mapping, got {type(doc).__name__}"])
    errors: list[str] = []
    if doc.get("kind") != KIND:
        errors.append(f"kind: {doc.get('kind')!r} is not {KIND}")
    if doc.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: {doc.get('apiVersion')!r} is not served; use {API_VERSION}")
    meta = doc.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not DNS_NAME.match(name):
        errors.append(f"metadata.name: {name!r} is not a valid name; use lower-case letters, digits, '-' "
                      "and '.', starting and ending with a letter or digit")
        name = "schedule"
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ScheduleSpecError([*errors, "spec: missing; a PipelineSchedule needs spec.template"])
    _unknown("spec", spec, _SPEC_FIELDS, errors)
    schedule, text, zone = None, "", "UTC"
    if spec.get("schedule") is not None:
        try:
            schedule = parse_schedule(spec["schedule"])
            text, zone = schedule_text(spec["schedule"]), spec["schedule"].get("timeZone") or "UTC"
        except ScheduleError as e:
            errors += e.errors
    trigger = _trigger(spec.get("trigger"), errors, base_dir)
    if trigger is not None and not text:
        text = f"on data: {trigger.uri}"
    values = {
        "suspend": _choice(spec, "suspend", (False, True), errors),
        "concurrency": _choice(spec, "concurrencyPolicy", POLICIES, errors),
        "missed_runs": _choice(spec, "missedRuns", MISSED_RUNS, errors),
        "starting_deadline": _count(spec, "startingDeadlineSeconds", None, errors, low=1),
        "max_missed_runs": _count(spec, "maxMissedRuns", 10, errors, low=1),
        "successful_history": _count(spec, "successfulRunsHistoryLimit", 3, errors),
        "failed_history": _count(spec, "failedRunsHistoryLimit", 1, errors),
    }
    template = _template(spec.get("template"), errors, base_dir)
    result = ScheduleSpec(name=name, namespace=namespace, schedule=schedule, schedule_text=text or "run-now only",
                          template=template, trigger=trigger, base_dir=base_dir, time_zone=zone, raw=spec, **values)
    if template.get("spec") is not None:
        errors += _template_problems(result, components)
    if errors:
        raise ScheduleSpecError(errors)
    return result


def schedule_text(schedule: dict) -> str:
    """A schedule for display: `0 6 * * 1-5 Europe/Berlin`, `every 2 Hour at :15 UTC`."""
    zone = schedule.get("timeZone") or "UTC"
    if "cron" in schedule:
        return f"{schedule['cron']} {zone}"
    rec = schedule["recurrence"]
    parts = [f"every {rec.get('interval', 1)} {rec['frequency']}"]
    for key in ("weekDays", "monthDays", "hours", "minutes"):
        if rec.get(key):
            parts.append(f"{key} {','.join(map(str, rec[key]))}")
    return " ".join(parts) + f" {zone}"


def _template_problems(spec: ScheduleSpec, components: ComponentResolver | None) -> list[str]:
    from .runs import build_run  # the run a firing makes, with a sample slot

    if spec.uses_manifest and spec.trigger is None:
        return ["spec.template.spec: uses ${{trigger.manifest}}, which only trigger.dataArrival sets; "
                "add spec.trigger.dataArrival or remove the expression"]
    if spec.uses_manifest and spec.schedule is not None:
        return ["spec.schedule: the template takes ${{trigger.manifest}}, so its runs are made by arriving "
                "files; remove spec.schedule (run-now polls at once)"]
    sample = build_run(spec, f"{spec.name}-000000000000", datetime(2000, 1, 1, tzinfo=timezone.utc), "schedule",
                       manifest="file:///manifest.txt" if spec.uses_manifest else None)
    try:
        load_pipeline(sample, spec.base_dir, components=components)
    except PipelineSpecError as e:
        return ["spec.template." + line for line in e.errors if not line.startswith("metadata.")]
    return []


def _unknown(path: str, value: dict, known: tuple[str, ...], errors: list[str]) -> None:
    errors.extend(lines(unknown_fields(path, value, known)))


def _choice(spec: dict, key: str, allowed: tuple, errors: list[str]) -> Any:
    value = spec.get(key, allowed[0])
    if value not in allowed or type(value) is not type(allowed[0]):
        errors.append(f"spec.{key}: {value!r} is not allowed; use one of {', '.join(map(str, allowed))}")
        return allowed[0]
    return value


@overload
def _count(spec: dict, key: str, default: int, errors: list[str], low: int = 0, path: str = "spec") -> int: ...
@overload
def _count(spec: dict, key: str, default: int | None, errors: list[str], low: int = 0,
           path: str = "spec") -> int | None: ...


def _count(spec: dict, key: str, default: int | None, errors: list[str], low: int = 0,
           path: str = "spec") -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        errors.append(f"{path}.{key}: {value!r} is not a whole number from {low}; write e.g. {default or 3600}")
        return default
    return value


def _trigger(value: Any, errors: list[str], base_dir: str | None) -> DataArrival | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("dataArrival"), dict):
        errors.append("spec.trigger: expected {dataArrival: {uri: ..., pattern: ..., pollIntervalSeconds: ..., "
                      "settleSeconds: ...}}")
        return None
    _unknown("spec.trigger", value, _TRIGGER_FIELDS, errors)
    arrival = value["dataArrival"]
    _unknown("spec.trigger.dataArrival", arrival, _ARRIVAL_FIELDS, errors)
    uri, pattern = arrival.get("uri"), arrival.get("pattern", "*")
    if not isinstance(uri, str) or not uri:
        errors.append("spec.trigger.dataArrival.uri: required; the folder to watch, e.g. az://incoming/")
        uri = ""
    if not isinstance(pattern, str) or not pattern:
        errors.append(f"spec.trigger.dataArrival.pattern: {pattern!r} is not a glob; write e.g. \"*.parquet\"")
        pattern = "*"
    path = "spec.trigger.dataArrival"
    poll = _count(arrival, "pollIntervalSeconds", 300, errors, low=1, path=path)
    settle = _count(arrival, "settleSeconds", 60, errors, low=1, path=path)
    return DataArrival(join_uri(base_dir, uri) if uri else uri, pattern, poll, settle)


def _template(value: Any, errors: list[str], base_dir: str | None) -> dict:
    """The template; a relative workdir taken from `base_dir`, as the run would take it, so the
    schedule's state and manifests lie where its runs' outputs do, wherever it is started from."""
    if not isinstance(value, dict) or not isinstance(value.get("spec"), dict):
        errors.append("spec.template: expected {metadata: {labels, annotations}, spec: <a PipelineRun spec>}")
        return {}
    _unknown("spec.template", value, _TEMPLATE_FIELDS, errors)
    meta = value.get("metadata") or {}
    if not isinstance(meta, dict):
        errors.append("spec.template.metadata: expected {labels: {...}, annotations: {...}}")
        meta = {}
    _unknown("spec.template.metadata", meta, _METADATA_FIELDS, errors)
    for key in _METADATA_FIELDS:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in (meta.get(key) or {}).items()):
            errors.append(f"spec.template.metadata.{key}: expected a map of strings to strings")
    spec = value["spec"]
    workdir = spec.get("workdir")
    if isinstance(workdir, str) and workdir and "${{" not in workdir:
        spec = {**spec, "workdir": join_uri(base_dir, workdir)}
    return {"metadata": {k: dict(meta.get(k) or {}) for k in _METADATA_FIELDS}, "spec": spec}


def load_schedule_file(path: str, components: ComponentResolver | None = None) -> ScheduleSpec:
    """A PipelineSchedule YAML file; the template's relative paths are relative to the file's folder."""
    doc = read_yaml(path, ScheduleSpecError)
    return load_schedule(doc, base_dir=os.path.dirname(os.path.abspath(path)), components=components)
