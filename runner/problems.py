"""The field problems of every loader: one "path: problem; fix" line each, gathered before
anything runs, so a user sees every mistake of a file at once."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Iterator
from typing import Any

DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # Kubernetes' metadata.name (DNS-1123 subdomain)


def did_you_mean(name: str, known: Collection[str], otherwise: str) -> str:
    """"did you mean X?" for the known name closest to `name`, else `otherwise`."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"did you mean {close[0]}?" if close else otherwise


def unknown_fields(path: str, value: dict, known: Collection[str]) -> Iterator[tuple[str, str]]:
    """(path, problem) of each key of `value` (at `path`; "" at the top) that is not a known field."""
    for key in value:
        if key not in known:
            yield (f"{path}.{key}" if path else str(key),
                   "unknown field; " + did_you_mean(str(key), known, "known fields: " + ", ".join(known)))


def lines(problems: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{path}: {problem}" for path, problem in problems]


class Problems:
    """A loader's problems so far."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def unknown(self, path: str, value: dict, known: Collection[str]) -> None:
        self.errors.extend(lines(unknown_fields(path, value, known)))

    def object_name(self, path: str, value: Any, what: str) -> str | None:
        """The name of a Kubernetes object at `path` (None when not given or invalid)."""
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {value!r}")
            return None
        if not DNS_NAME.match(value):
            self.fail(path, f"{value!r} is not a valid name; give the name of {what} (lower-case letters, "
                      "digits, '-' and '.')")
            return None
        return value
