"""The run report's files (DESIGN.md, "The run report"): report/minibatches.csv and
report/resources.csv, as CSV text with a header, and read back as typed records.

Columns are records.ATTEMPT_COLUMNS and records.RESOURCE_COLUMNS; a None is an empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from .layout import Layout
from .records import ATTEMPT_COLUMNS, RESOURCE_COLUMNS, AttemptLine, ResourceSample


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
