"""Typed values of pipeline parameters and component inputs."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

SCALAR_TYPES = ("string", "integer", "number", "boolean")
URI_TYPES = ("uri_folder", "uri_file")
_INTEGER = re.compile(r"^[-+]?[0-9]+$")
_EXPECTED = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
             "uri_folder": "the URI of a folder", "uri_file": "the URI of a file"}


def type_problem(type_: str, value: Any) -> str | None:
    """Why `value` is not of `type_` ("expected ..., got ..."), or None."""
    if type_ == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_ == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif type_ == "boolean":
        ok = isinstance(value, bool)
    elif type_ in URI_TYPES:
        ok = isinstance(value, str) and value != ""
    else:
        ok = isinstance(value, str)
    return None if ok else f"expected {_EXPECTED[type_]}, got {value!r}"


def from_text(type_: str, value: Any) -> Any:
    """A value given from outside (`--set parameters.X=...`, a schedule) in the parameter's type.

    Text is parsed by the type ("600" → 600, "true" → True); a date that YAML read from
    `2025-01-31` is a string parameter's ISO text. Anything else is returned unchanged,
    for `type_problem` to judge.
    """
    if type_ == "string" and isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        return value
    text = value.strip()
    if type_ == "integer" and _INTEGER.match(text):
        return int(text)
    if type_ == "number":
        try:
            return int(text) if _INTEGER.match(text) else float(text)
        except ValueError:
            return value
    if type_ == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return value
