"""What a run's report shows, gathered from its folder and reduced to figures a page can draw.

Sources: `report/minibatches.csv` (one line per attempt), `report/resources.csv` (samples of
each worker's CPU, memory and GPU), summary.json, errors.jsonl, the plan and the spec the
run was planned with. A run without a report folder (written before it existed) or still
running gives what there is; `missing` says what is not there and why.

The figures stay small whatever the run's size: the timeline and throughput are binned
into TIMELINE_COLUMNS columns, and the tables are capped.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from .commits import read_commits
from .merge import read_summary
from .plan import read_plan
from .records import AttemptLine, ResourceSample
from .reportfiles import attempts_csv, parse_attempts, parse_resources, read_attempts, read_resources
from .runfolders import describe

TIMELINE_COLUMNS = 600  # time bins of the timeline
THROUGHPUT_COLUMNS = 120  # time bins of the throughput chart, each at least THROUGHPUT_MIN_SECONDS
THROUGHPUT_MIN_SECONDS = 1.0
MAX_WORKER_ROWS = 400  # timeline rows; more workers are said, not drawn
MAX_ERROR_GROUPS = 50
EXAMPLES_PER_ERROR = 5
SLOWEST = 20
MAX_IDLE_ROWS = 200
SECRET_KEYS = ("value",)  # environment.env values may hold secrets: only their names are shown


@dataclass
class Attempt:
    """An attempt line (records.AttemptLine) with its start as epoch seconds, as the figures use it."""

    line: AttemptLine
    start: float

    @classmethod
    def of(cls, line: AttemptLine) -> Attempt:
        return cls(line, _epoch(line.start))

    @property
    def end(self) -> float:
        return self.start + self.line.seconds

    @property
    def worker_key(self) -> str:
        """The worker's name, as its log is named (runlogs): local shards share one host name."""
        return f"shard-{self.line.shard}-worker-{'?' if self.line.worker is None else self.line.worker}"

    @property
    def ok(self) -> bool:
        """It succeeded (some of its items may have failed: line.failed)."""
        return self.line.status == "succeeded"


@dataclass
class ErrorGroup:
    error: str  # the first line of the error
    attempts: int = 0
    items: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)  # (mini-batch, full error)


@dataclass
class WorkerRow:
    key: str
    busy: list[float]  # fraction of each column busy
    failures: list[int]  # failed attempts ending in each column
    busy_seconds: float
    attempts: int
    idle_seconds: float


@dataclass
class PodResources:
    pod: str
    samples: int
    cpu_mean: float | None
    cpu_max: float | None
    rss_max: float | None
    gpu_util_mean: float | None
    gpu_memory_max: float | None
    cpu_series: list[tuple[float, float]]  # (time, cpu summed over the pod's workers), binned


@dataclass
class Report:
    run_id: str
    uri: str
    phase: str
    generated: float
    summary: dict | None
    spec: dict | None
    plan_totals: dict | None
    status: dict
    missing: list[str] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    throughput_seconds: float = 0.0  # the width of a throughput bin
    workers: list[WorkerRow] = field(default_factory=list)
    more_workers: int = 0
    throughput: list[float] = field(default_factory=list)  # items per second in each column
    error_groups: list[ErrorGroup] = field(default_factory=list)
    more_error_groups: int = 0
    slowest: list[Attempt] = field(default_factory=list)
    attempts: int = 0
    failed_attempts: int = 0
    items: int = 0
    resources: list[PodResources] = field(default_factory=list)


def gather(fs, layout, now: float | None = None) -> Report:
    """The report of the run at `layout`, as far as it has come."""
    now = time.time() if now is None else now
    status = describe(fs, layout, now)
    plan = read_plan(fs, layout)
    report = Report(layout.run_id, status.uri, status.phase, now, read_summary(fs, layout), _read_spec(fs, layout),
                    plan.header()["totals"] if plan is not None else None, status.to_dict())
    if report.summary is None:
        report.missing.append("summary.json: the run has not been merged yet" if status.running
                              else "summary.json: the run stopped before its merge")
    if report.spec is None:
        report.missing.append("spec.json: the run was planned by an older version, which did not keep its spec")
    attempts = _read_attempts(fs, layout, report)
    if attempts:
        _timeline(report, attempts)
        _failures(report, attempts)
        report.slowest = sorted(attempts, key=lambda a: a.line.seconds, reverse=True)[:SLOWEST]
    else:
        _failures_from_errors(fs, layout, report)
    _resources(fs, layout, report)
    return report


def _read_spec(fs, layout) -> dict | None:
    try:
        spec = json.loads(fs.cat_file(layout.spec))
    except (FileNotFoundError, ValueError):
        return None
    for env in (spec.get("environment") or {}).get("env") or []:
        for key in SECRET_KEYS:
            if isinstance(env, dict) and key in env:
                env[key] = "(hidden)"
    return spec


def _epoch(text: str) -> float:
    """An ISO 8601 time (UTC where it names no zone) as epoch seconds."""
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)).timestamp()


def _read_attempts(fs, layout, report: Report) -> list[Attempt]:
    """The merged report/minibatches.csv; before the merge, the lines the commit records carry."""
    try:
        lines = read_attempts(fs, layout)
    except FileNotFoundError:
        header = attempts_csv([], header=True)
        committed = read_commits(fs, layout, range(report.plan_totals["miniBatches"])) if report.plan_totals else {}
        texts = [record.report for _, record in sorted(committed.items()) if record.report]
        lines = parse_attempts(header + "".join(texts)) if texts else []
        if not lines:
            report.missing.append("report/minibatches.csv: the run kept no line per attempt (a run of an older "
                                  "version, or one with no mini-batch done yet): no timeline, throughput, slowest "
                                  "mini-batches or idle time")
            return []
    attempts = [Attempt.of(line) for line in lines]
    report.attempts = len(attempts)
    report.failed_attempts = sum(1 for a in attempts if not a.ok)
    report.items = sum(a.line.succeeded + a.line.failed for a in attempts)
    return attempts


def _timeline(report: Report, attempts: list[Attempt]) -> None:
    """Each worker's busy fraction per column, failures per column, items per second per column."""
    start = min(a.start for a in attempts)
    end = max(a.end for a in attempts)
    if report.phase in ("Running", "Planning"):
        end = max(end, report.generated)
    width = max(end - start, 1e-6)
    columns = TIMELINE_COLUMNS
    step = width / columns
    report.start, report.end = start, end
    by_worker: dict[str, list[Attempt]] = defaultdict(list)
    bin_seconds = max(width / THROUGHPUT_COLUMNS, THROUGHPUT_MIN_SECONDS)
    throughput = [0.0] * max(1, math.ceil(width / bin_seconds))
    for a in attempts:
        by_worker[a.worker_key].append(a)
        throughput[min(len(throughput) - 1, int((a.end - start) / bin_seconds))] += a.line.succeeded + a.line.failed
    report.throughput = [n / bin_seconds for n in throughput]
    report.throughput_seconds = bin_seconds
    rows = []
    for key in sorted(by_worker, key=_natural):
        busy = [0.0] * columns
        failures = [0] * columns
        seconds = 0.0
        for a in by_worker[key]:
            seconds += a.line.seconds
            _spread(busy, a.start - start, a.end - start, step)
            if not a.ok:
                failures[min(columns - 1, int((a.end - start) / step))] += 1
        rows.append(WorkerRow(key, [min(1.0, b / step) for b in busy], failures, seconds, len(by_worker[key]),
                              max(0.0, (end - start) - seconds)))
    report.workers = rows[:MAX_WORKER_ROWS]
    report.more_workers = max(0, len(rows) - MAX_WORKER_ROWS)


def _spread(busy: list[float], a: float, b: float, step: float) -> None:
    """Add the interval [a, b) (seconds from the start) to the columns it covers."""
    first, last = int(a / step), min(len(busy) - 1, int(b / step))
    for column in range(first, last + 1):
        lo, hi = max(a, column * step), min(b, (column + 1) * step)
        if hi > lo:
            busy[column] += hi - lo


def _natural(key: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _first_line(error: str) -> str:
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return (lines[-1] if lines and lines[0].startswith("Traceback") else lines[0] if lines else "(no message)")[:300]


def _group(report: Report, errors) -> None:
    """Errors (mini-batch, error text, items) grouped by their first line, the most frequent first."""
    groups: dict[str, ErrorGroup] = {}
    for mini_batch, error, items in errors:
        key = _first_line(error)
        group = groups.setdefault(key, ErrorGroup(key))
        group.attempts += 1
        group.items += items
        if len(group.examples) < EXAMPLES_PER_ERROR:
            group.examples.append((mini_batch, error[:4000]))
    ordered = sorted(groups.values(), key=lambda g: (-g.attempts, g.error))
    report.error_groups = ordered[:MAX_ERROR_GROUPS]
    report.more_error_groups = max(0, len(ordered) - MAX_ERROR_GROUPS)


def _failures(report: Report, attempts: list[Attempt]) -> None:
    """Failed and retried attempts, and succeeded ones with failed items, by their error."""
    _group(report, ((a.line.mini_batch, a.line.error or a.line.status, a.line.failed) for a in attempts
                    if not a.ok or a.line.failed))


def _failures_from_errors(fs, layout, report: Report) -> None:
    """Without attempt lines, the failed items of errors.jsonl (a merged run) grouped by error."""
    try:
        text = fs.cat_file(layout.errors).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    records = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        records.append((int(d.get("miniBatch", -1)), str(d.get("error") or ""), int(d.get("items") or 1)))
    _group(report, records)


def _read_samples(fs, layout) -> list[ResourceSample]:
    """The merged report/resources.csv; before the merge, the pods' pieces (each with its header)."""
    try:
        return read_resources(fs, layout)
    except FileNotFoundError:
        pass
    try:
        pieces = sorted(fs.ls(layout.resource_pieces_dir, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [sample for path in pieces if path.endswith(".csv")
            for sample in parse_resources(fs.cat_file(path).decode("utf-8", errors="replace"))]


def _resources(fs, layout, report: Report) -> None:
    """Per pod (a shard on a host): its own samples (worker "pod": the whole pod) where it has them, else its
    workers' summed."""
    samples = _read_samples(fs, layout)
    if not samples:
        report.missing.append("report/resources.csv: no samples of CPU, memory and GPU use (a run of an older "
                              "version, or one that ended before its first sample)")
        return
    by_pod: dict[str, list[ResourceSample]] = defaultdict(list)
    for sample in samples:  # local shards share one host name: a pod is its shard and host
        by_pod[f"{sample.pod} (shard {sample.shard})"].append(sample)
    for pod in sorted(by_pod, key=_natural):
        own = [x for x in by_pod[pod] if x.worker == "pod"]
        at: dict[str, list[ResourceSample]] = defaultdict(list)
        for x in own or by_pod[pod]:
            at[x.time].append(x)
        totals = [(_epoch(t), sum(x.cpu for x in xs), sum(x.rss for x in xs)) for t, xs in sorted(at.items())]
        gpu = [x.gpu_utilization for x in by_pod[pod] if x.gpu_utilization is not None and x.worker != "pod"]
        gpu_memory = [sum(x.gpu_memory or 0 for x in xs) for xs in at.values()]
        cpu = [c for _, c, _ in totals]
        stride = max(1, len(totals) // TIMELINE_COLUMNS)
        report.resources.append(PodResources(
            pod, len(totals), sum(cpu) / len(cpu) if cpu else None, max(cpu, default=None),
            max((r for _, _, r in totals), default=None), sum(gpu) / len(gpu) if gpu else None,
            max(gpu_memory, default=0) or None, [(t, c) for t, c, _ in totals[::stride]]))
