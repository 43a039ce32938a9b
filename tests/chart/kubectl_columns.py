"""A CRD's printer columns rendered as `kubectl get` shows them (the API server's table convertor).

A `date` column is printed as the time since the value (duration.HumanDuration):
"<invalid>" for a time more than a second ahead, so a `date` column must hold a time
that has passed. Other types print their value; a missing field prints "<none>".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

INVALID = "<invalid>"


def field(resource: dict, json_path: str) -> Any:
    """The value at a simple JSONPath such as `.status.phase`, or None."""
    value: Any = resource
    for name in json_path.lstrip(".").split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def human_duration(d: timedelta) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, to the precision columns need."""
    seconds = int(d.total_seconds())
    if seconds < -1:
        return INVALID
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def cell(column: dict, resource: dict, now: datetime) -> str:
    value = field(resource, column["jsonPath"])
    if value is None:
        return "<none>"
    if column["type"] == "date":
        return human_duration(now - datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    if column["type"] == "boolean":
        return str(bool(value)).lower()
    return str(value)


def row(crd: dict, resource: dict, now: datetime) -> dict[str, str]:
    """Every printer column of `crd` for `resource`, name → cell, as of `now`."""
    (version,) = crd["spec"]["versions"]
    return {c["name"]: cell(c, resource, now) for c in version["additionalPrinterColumns"]}
