"""A known run's report folder (report/minibatches.csv, report/resources.csv), written from
typed records, for tests of what reads a report (shared by the test folders)."""

from __future__ import annotations

from pathlib import Path

from parallelrun.runner.claims import chunks
from parallelrun.runner.layout import Layout
from parallelrun.runner.planning import Plan, read_plan
from parallelrun.runner.records import AttemptLine, ResourceSample
from parallelrun.runner.reportfiles import attempts_csv, read_attempts, resources_csv
from parallelrun.runner.storage import filesystem

RUN_ID = "known-0123456789"


def known_attempts() -> list[AttemptLine]:
    """Two shards, chunks of two mini-batches: mini-batch 1 retried once then succeeded, 2
    failed after two attempts, 3 succeeded with one failed item, 4 (shard 1's range) taken
    by shard 0 from its tail, 5 lost its worker (timed out: no run/read seconds), then succeeded."""
    def line(mb, chunk, shard, worker, attempt, start, seconds, items, ok, bad, status, error="", run=None):
        return AttemptLine(mb, chunk, shard, f"pod-{shard}", worker, attempt, f"2026-01-01T00:00:{start:06.3f}Z",
                           seconds, seconds * 0.9 if run is None else run, None if run == -1 else 0.01,
                           items, ok, bad, status, error)
    return [
        line(0, 0, 0, 0, 1, 0.0, 1.0, 10, 10, 0, "succeeded"),
        line(1, 0, 0, 1, 1, 0.0, 0.5, 10, 0, 0, "retried", "ValueError: flaky"),
        line(1, 0, 0, 1, 2, 0.6, 1.0, 10, 10, 0, "succeeded"),
        line(2, 2, 1, 0, 1, 0.0, 0.2, 10, 0, 0, "retried", "RuntimeError: always"),
        line(2, 2, 1, 0, 2, 0.3, 0.2, 10, 0, 10, "failed", "RuntimeError: always"),
        line(3, 2, 1, 1, 1, 0.0, 2.0, 10, 9, 1, "succeeded", "run() returned 9 results for 10 items"),
        line(4, 4, 0, 0, 1, 1.1, 0.8, 10, 10, 0, "succeeded"),
        AttemptLine(5, 4, 1, "pod-1", 0, 1, "2026-01-01T00:00:00.600Z", 20.0, None, None, 10, 0, 0, "retried",
                    "TimeoutError: run() did not return within runInvocationTimeout (20 s)"),
        line(5, 4, 1, 0, 2, 20.7, 1.0, 10, 10, 0, "succeeded"),
    ]


def known_samples() -> list[ResourceSample]:
    """Two pods of two workers, two samples each; pod 0's workers have a GPU each."""
    samples = []
    for second in (0, 5):
        at = f"2026-01-01T00:00:{second:02d}.000Z"
        for shard in (0, 1):
            gpu = shard == 0
            for worker in (0, 1):
                samples.append(ResourceSample(at, f"pod-{shard}", shard, str(worker), 100 + 10 * shard + worker,
                                              95.0, 200 * 2**20, worker if gpu else None, 80.0 if gpu else None,
                                              2**30 if gpu else None))
            samples.append(ResourceSample(at, f"pod-{shard}", shard, "pod", 10 * shard + 1, 195.0, 500 * 2**20,
                                          None, None, 2 * 2**30 if gpu else None))
    return samples


def write_known_report(output: Path, run_id: str = RUN_ID) -> Layout:
    """The report folder of run `run_id` under the output folder `output`; returns its layout."""
    layout = Layout(str(output), run_id)
    Path(layout.report_dir).mkdir(parents=True, exist_ok=True)
    Path(layout.report_mini_batches).write_text(attempts_csv(known_attempts(), header=True))
    Path(layout.report_resources).write_text(resources_csv(known_samples(), header=True))
    return layout


def report_of(summary: dict) -> tuple[list[AttemptLine], Plan, Layout]:
    """The minibatches.csv of the local run whose summary.json is `summary`, its plan and layout."""
    root = Path(summary["summary"]).parent
    fs, _ = filesystem(str(root))
    layout = Layout(str(root.parent.parent), root.name)
    return read_attempts(fs, layout), read_plan(fs, layout), layout


def check_report(lines: list[AttemptLine], summary: dict, plan: Plan) -> None:
    """A merged run's minibatches.csv agrees with its summary.json: one line not "retried" per
    mini-batch of the plan, in plan order, whose counts add up to the summary's; each
    mini-batch's attempts numbered from 1, the last alone not "retried"; each line's chunk
    the plan's."""
    final = [line for line in lines if line.status != "retried"]
    assert [line.mini_batch for line in final] == list(range(plan.total_mini_batches))
    assert [line.mini_batch for line in lines] == sorted(line.mini_batch for line in lines)
    assert sum(line.status == "succeeded" for line in final) == summary["miniBatches"]["succeeded"]
    assert sum(line.status == "failed" for line in final) == summary["miniBatches"]["failed"]
    assert sum(line.succeeded for line in final) == summary["items"]["succeeded"]
    assert sum(line.failed for line in final) == summary["items"]["failed"]
    attempts: dict[int, list[AttemptLine]] = {}
    for line in lines:
        attempts.setdefault(line.mini_batch, []).append(line)
    for tried in attempts.values():
        assert [a.attempt for a in tried] == list(range(1, len(tried) + 1))
        assert all(a.status == "retried" for a in tried[:-1])
    first_of = {mb: c.first for c in chunks(plan) for mb in range(c.first, c.stop)}
    assert all(line.chunk == first_of[line.mini_batch] for line in lines)
