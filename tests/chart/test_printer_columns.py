"""Every printer column of every CRD as `kubectl get` renders it, for resources as the operator writes them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from chart_paths import CHART
from crd_validation import load_documents
from kubectl_columns import INVALID, row

NOW = datetime(2026, 1, 5, 6, 0, 30, tzinfo=timezone.utc)
CRDS = {crd["spec"]["names"]["kind"]: crd for crd in load_documents(sorted((CHART / "crds").glob("*.yaml")))
        if crd["spec"]["group"] == "parallelrun.dev"}


def at(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


AGO, AHEAD = timedelta(minutes=-5), timedelta(minutes=30)
METADATA = {"name": "x", "namespace": "ns", "creationTimestamp": at(timedelta(hours=-1))}
RESOURCES = {  # every status field a column shows, as the operator writes it in mid-life
    "BatchInferenceJob": {"metadata": METADATA, "spec": {}, "status": {
        "phase": "Running", "progressText": "3/36", "progress": {"items": {"failed": 2}}, "nodesText": "2/2",
        "itemsPerSecond": 12.5, "report": "az://out/x/_parallelrun/x-1234/report/report.html",
        "runId": "x-1234", "outputUri": "az://out/x/parallel_run_step.txt", "startTime": at(AGO)}},
    "PipelineRun": {"metadata": METADATA, "spec": {}, "status": {
        "phase": "Running", "progressText": "1/3", "currentStep": "score", "message": "running score",
        "startTime": at(AGO)}},
    "PipelineSchedule": {"metadata": METADATA, "spec": {"suspend": False}, "status": {
        "scheduleText": "0 6 * * 1-5 (UTC)", "lastScheduleTime": at(AGO), "nextScheduleTime": at(AHEAD),
        "nextScheduleTimes": [at(AHEAD), at(2 * AHEAD), at(3 * AHEAD)], "activeCount": 1}},
}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_column_renders(kind: str) -> None:
    cells = row(CRDS[kind], RESOURCES[kind], NOW)
    assert not [name for name, text in cells.items() if text in (INVALID, "<none>")], cells


def test_a_schedule_shows_when_it_runs_next() -> None:
    cells = row(CRDS["PipelineSchedule"], RESOURCES["PipelineSchedule"], NOW)
    assert (cells["Last"], cells["Next"], cells["Age"]) == ("5m", at(AHEAD), "60m")


def test_date_columns_show_only_times_that_have_passed() -> None:
    """kubectl prints a time ahead as <invalid>; a column of such a time must be a string."""
    for kind, crd in CRDS.items():
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            if column["type"] == "date":
                assert column["jsonPath"] in (".metadata.creationTimestamp", ".status.lastScheduleTime",
                                              ".status.startTime", ".status.completionTime"), (kind, column)
