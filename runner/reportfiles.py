"""The run report's files (DESIGN.md, "The run report"): report/minibatches.csv and
report/resources.csv, as CSV text with a header, and read back as typed records.

Columns are records.ATTEMPT_COLUMNS and records.RESOURCE_COLUMNS; a None is an empty cell.
"""

from __future__ import annotations

import csv
import io
import posixpath
import time
from collections.abc import Iterable

from .layout import Layout
from .records import ATTEMPT_COLUMNS, ERROR_CHARS, RESOURCE_COLUMNS, AttemptLine, DoneRecord, ResourceSample
from .storage import open_atomic, write_atomic


def csv_lines(rows: Iterable[dict], columns: tuple[str, ...], header: bool = False) -> str:
    """`rows` (to_dict()s) as CSV lines ("\\n" ends each), the header first when `header`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def attempts_csv(lines: Iterable[AttemptLine], header: bool = False) -> str:
    return csv_lines((line.to_dict() for line in lines), ATTEMPT_COLUMNS, header)


def resources_csv(samples: Iterable[ResourceSample], header: bool = False) -> str:
    return csv_lines((sample.to_dict() for sample in samples), RESOURCE_COLUMNS, header)


def utc(at: float) -> str:
    """time.time() `at` in ISO 8601, UTC, to the millisecond: 2026-01-01T00:00:00.000Z."""
    seconds = int(at)
    return f"{_utc_second(seconds)}.{int((at - seconds) * 1000):03d}Z"


_second = (-1, "")  # the last second formatted: many attempts end in each


def _utc_second(seconds: int) -> str:
    global _second
    cached = _second  # one reference, read once: local shards are threads
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return cached[1]


def cell(text: str) -> str:
    """`text` as a CSV cell (quoted where it must be)."""
    if not text or not any(c in text for c in ',"\r\n'):
        return text
    return '"' + text.replace('"', '""') + '"'


def short_error(error: str | None) -> str:
    """An attempt's error for its line: its first line, at most ERROR_CHARS characters."""
    if not error:
        return ""
    line = error.strip().split("\n", 1)[0]
    return line if len(line) <= ERROR_CHARS else line[:ERROR_CHARS - 3] + "..."


def attempt_row(mini_batch: int, chunk: int, shard: int, pod_cell: str, worker: int | None, attempt: int,
                start: float, seconds: float, run_seconds: float | None, read_seconds: float | None, items: int,
                succeeded: int, failed: int, status: str, error: str) -> str:
    """An AttemptLine's line of minibatches.csv, as attempts_csv writes it, in a fraction of its time
    (one per attempt): `pod_cell` is cell(pod), `start` a time.time(), `error` short_error's; seconds
    to 0.1 ms."""
    return (f"{mini_batch},{chunk},{shard},{pod_cell},{'' if worker is None else worker},{attempt},{utc(start)},"
            f"{seconds:.4f},{'' if run_seconds is None else f'{run_seconds:.4f}'},"
            f"{'' if read_seconds is None else f'{read_seconds:.4f}'},{items},{succeeded},{failed},{status},"
            f"{cell(error)}\n")


def parse_attempts(text: str) -> list[AttemptLine]:
    """The lines of a minibatches.csv (with its header)."""
    return [AttemptLine.from_dict(row) for row in csv.DictReader(io.StringIO(text))]


def parse_resources(text: str) -> list[ResourceSample]:
    """The samples of a resources.csv (with its header)."""
    return [ResourceSample.from_dict(row) for row in csv.DictReader(io.StringIO(text))]


def read_attempts(fs, layout: Layout) -> list[AttemptLine]:
    """A merged run's report/minibatches.csv; FileNotFoundError before the merge."""
    return parse_attempts(fs.cat_file(layout.report_mini_batches).decode())


def read_resources(fs, layout: Layout) -> list[ResourceSample]:
    """A merged run's report/resources.csv; FileNotFoundError before the merge."""
    return parse_resources(fs.cat_file(layout.report_resources).decode())


def write_report(fs, layout: Layout, committed: dict[int, DoneRecord]) -> None:
    """The merge's part: report/minibatches.csv, the attempts of the committed mini-batches in plan
    order (their records carry them), and report/resources.csv, every pod's samples by time (its
    pieces; a write cut short, under a temporary name, is not one)."""
    header = ",".join(ATTEMPT_COLUMNS) + "\n"
    with open_atomic(fs, layout.report_mini_batches) as out:
        reports = [committed[i].report or "" for i in sorted(committed)]
        for a in range(0, len(reports), 10_000):  # a write per 10,000 mini-batches
            out.write(((header if not a else "") + "".join(reports[a:a + 10_000])).encode())
        if not reports:
            out.write(header.encode())
    try:
        pieces = sorted(fs.ls(layout.resource_pieces_dir, detail=False))
    except FileNotFoundError:
        pieces = []
    pieces = [path for path in pieces if path.endswith(".csv") and not posixpath.basename(path).startswith(".")]
    lines = [line for path in pieces for line in fs.cat_file(path).decode().splitlines()[1:] if line]
    lines.sort()  # by time first (ISO 8601 sorts as text), then pod, shard, worker
    write_atomic(fs, layout.report_resources, "".join(f"{line}\n" for line in [",".join(RESOURCE_COLUMNS), *lines])
                 .encode())
