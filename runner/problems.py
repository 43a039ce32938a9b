"""The field problems of every loader: one "path: problem; fix" line each, gathered before
anything runs, so a user sees every mistake of a file at once."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Iterator


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
