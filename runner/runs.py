"""Finished runs: whether one can stand for a new run of the same spec and code (allowReuse).

Local mode and the operator both ask it, so a run is reused on the same terms on a
laptop and on a cluster.
"""

from __future__ import annotations

from .layout import Layout
from .merge import read_summary
from .plan import PlanError, input_changes, read_plan
from .records import RunSummary
from .spec import JobSpec


def reusable(spec: JobSpec, fs, layout: Layout) -> RunSummary | None:
    """The summary of a finished run that can stand for this one: it succeeded, its
    output is still there, and its input, model and side inputs are unchanged."""
    summary = read_summary(fs, layout)
    plan = read_plan(fs, layout)
    if summary is None or plan is None or not summary.succeeded:
        return None
    if summary.output and not fs.exists(layout.final_output(spec.output.file_name)):
        return None
    try:
        return None if input_changes(spec, plan, fs, layout) else summary
    except PlanError:
        return None
