"""The runs a schedule makes: their names and the PipelineRun each firing creates (pure).

A slot's run is `<schedule>-<yyyymmddhhmm UTC>`, a run-now `<schedule>-now-<hash of the
value>`, a data-arrival run `<schedule>-data-<hash of the watermark it moves from>`: the
same firing always has the same name, so a second create meets 409 and is adopted. Names
stay within 52 characters (a long schedule name is cut and given a hash of itself), so
the run's children (`<run>-<step>`) keep room for their own suffixes, as CronJob does.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..api import (
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_WATERMARK,
    API_VERSION,
    LABEL_SCHEDULE,
    LABEL_TRIGGER,
    PIPELINE_RUN,
)
from ..pipelines.expressions import substitute
from .firetimes import slot_name

if TYPE_CHECKING:
    from .spec import ScheduleSpec

MAX_RUN_NAME = 52


def _hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def run_name(schedule: str, suffix: str) -> str:
    """`<schedule>-<suffix>` within MAX_RUN_NAME, a long schedule name cut and given its hash."""
    room = MAX_RUN_NAME - len(suffix) - 1
    base = schedule if len(schedule) <= room else schedule[:room - 6].rstrip("-.") + "-" + _hash(schedule, 5)
    return f"{base}-{suffix}"


def slot_run_name(schedule: str, slot: datetime) -> str:
    return run_name(schedule, slot_name(slot))


def run_now_name(schedule: str, value: str) -> str:
    return run_name(schedule, "now-" + _hash(value, 8))


def data_run_name(schedule: str, watermark_from: str) -> str:
    return run_name(schedule, "data-" + _hash(watermark_from, 8))


def schedule_label(schedule: str) -> str:
    """The label value naming a schedule (a label value has at most 63 characters)."""
    return schedule if len(schedule) <= 63 else schedule[:57].rstrip("-.") + "-" + _hash(schedule, 5)


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> datetime | None:
    """A timestamp as the API server and rfc3339() write it (None: absent)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def build_run(spec: ScheduleSpec, name: str, slot: datetime, trigger: str, *, manifest: str | None = None,
              watermark: str | None = None, owner: dict | None = None) -> dict:
    """The PipelineRun of one firing: the template, `${{schedule.scheduledTime}}` = the slot, and
    `${{trigger.manifest}}` = the manifest's URI, substituted as text."""
    values: dict[str, Any] = {"schedule.scheduledTime": rfc3339(slot)}
    if manifest is not None:
        values["trigger.manifest"] = manifest
    meta = spec.template.get("metadata") or {}
    labels = {**meta.get("labels", {}), LABEL_SCHEDULE: schedule_label(spec.name), LABEL_TRIGGER: trigger}
    annotations = {**meta.get("annotations", {}), ANNOTATION_SCHEDULED_TIME: rfc3339(slot)}
    if watermark is not None:
        annotations[ANNOTATION_WATERMARK] = watermark
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": API_VERSION, "kind": PIPELINE_RUN.kind, "metadata": metadata,
            "spec": substitute(copy.deepcopy(dict(spec.template["spec"])), values)}
