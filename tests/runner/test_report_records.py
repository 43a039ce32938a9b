"""The report's records: AttemptLine and ResourceSample through their CSV files and back."""

from __future__ import annotations

import csv
import io

from reportfolder import known_attempts, known_samples, write_known_report

from parallelrun.runner.records import ATTEMPT_COLUMNS, RESOURCE_COLUMNS, AttemptLine, DoneRecord, ResourceSample
from parallelrun.runner.reportfiles import (
    attempts_csv,
    parse_attempts,
    parse_resources,
    read_attempts,
    read_resources,
    resources_csv,
)
from parallelrun.runner.storage import filesystem


def test_columns_are_the_reports_names_in_order():
    assert ATTEMPT_COLUMNS == ("miniBatch", "chunk", "shard", "pod", "worker", "attempt", "start", "seconds",
                               "runSeconds", "readSeconds", "items", "succeeded", "failed", "status", "error")
    assert RESOURCE_COLUMNS == ("time", "pod", "shard", "worker", "pid", "cpu", "rss", "gpu", "gpuUtilization",
                                "gpuMemory")


def test_attempt_lines_round_trip_through_csv_with_empty_cells_and_quoted_errors():
    lines = [*known_attempts(),
             AttemptLine(9, 8, 0, "pod-0", None, 1, "2026-01-01T00:00:00.000Z", 0.5, None, None, 3, 0, 0, "retried",
                         'KeyError: "a, b"')]
    text = attempts_csv(lines, header=True)
    assert text.splitlines()[0] == ",".join(ATTEMPT_COLUMNS)
    assert parse_attempts(text) == lines
    assert [AttemptLine.from_dict(line.to_dict()) for line in lines] == lines
    row = next(csv.DictReader(io.StringIO(text.splitlines()[0] + "\n" + text.splitlines()[-1])))
    assert row["worker"] == row["runSeconds"] == ""


def test_resource_samples_round_trip_through_csv():
    samples = known_samples()
    assert parse_resources(resources_csv(samples, header=True)) == samples
    assert [ResourceSample.from_dict(s.to_dict()) for s in samples] == samples


def test_done_record_carries_its_attempt_lines_and_reads_records_without_them():
    text = attempts_csv(known_attempts()[1:3])
    record = DoneRecord(1, "succeeded", 10, 10, 0, 2, report=text)
    assert DoneRecord.from_dict(record.to_dict()).report == text
    old = record.to_dict()
    del old["report"]
    assert DoneRecord.from_dict(old).report is None


def test_known_report_folder_reads_back(tmp_path):
    layout = write_known_report(tmp_path)
    fs, _ = filesystem(str(tmp_path))
    assert read_attempts(fs, layout) == known_attempts()
    assert read_resources(fs, layout) == known_samples()
