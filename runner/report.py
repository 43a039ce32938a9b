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
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .commits import read_commits
from .merge import read_summary
from .planning import read_plan
from .records import AttemptLine, ErrorLine, ResourceSample, RunSummary
from .reportfiles import attempts_csv, parse_resources, read_resources
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
    """An attempt line (records.AttemptLine) with its start as epoch seconds, as the page shows it."""

    line: AttemptLine
    start: float

    @property
    def worker_key(self) -> str:
        """The worker's name, as its log is named (runlogs): local shards share one host name."""
        return f"shard-{self.line.shard}-worker-{'?' if self.line.worker is None else self.line.worker}"


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
    summary: RunSummary | None
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
    if attempts is not None:
        _figures(report, attempts)
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


_ATTEMPT_TYPES = {"miniBatch": pa.int64(), "shard": pa.int64(), "pod": pa.string(), "worker": pa.int64(),
                  "attempt": pa.int64(), "start": pa.timestamp("us", tz="UTC"), "seconds": pa.float64(),
                  "items": pa.int64(), "succeeded": pa.int64(), "failed": pa.int64(), "status": pa.string(),
                  "error": pa.string()}


def _read_attempts(fs, layout, report: Report) -> dict | None:
    """The columns of the merged report/minibatches.csv (before the merge: the lines the commit
    records carry), read with Arrow: a run of a million mini-batches is read in a second or two."""
    try:
        data = fs.cat_file(layout.report_mini_batches)
    except FileNotFoundError:
        committed = read_commits(fs, layout, range(report.plan_totals["miniBatches"])) if report.plan_totals else {}
        texts = [record.report for _, record in sorted(committed.items()) if record.report]
        data = (attempts_csv([], header=True) + "".join(texts)).encode() if texts else b""
    table = pacsv.read_csv(pa.py_buffer(data), parse_options=pacsv.ParseOptions(newlines_in_values=True),
                           convert_options=pacsv.ConvertOptions(column_types=_ATTEMPT_TYPES,
                                                                include_columns=list(_ATTEMPT_TYPES),
                                                                strings_can_be_null=False)) if data else None
    if table is None or not table.num_rows:
        report.missing.append("report/minibatches.csv: the run kept no line per attempt (a run of an older "
                              "version, or one with no mini-batch done yet): no timeline, throughput, slowest "
                              "mini-batches or idle time")
        return None
    columns = {name: table[name].to_numpy() for name in ("miniBatch", "shard", "attempt", "seconds", "items",
                                                           "succeeded", "failed")}
    columns["worker"] = table["worker"].fill_null(-1).to_numpy()
    columns["start"] = table["start"].cast(pa.int64()).to_numpy() / 1e6
    columns["ok"] = pc.equal(table["status"], "succeeded").to_numpy(zero_copy_only=False)
    for name in ("status", "error", "pod"):  # text, read only for the rows shown
        columns[name] = table[name].combine_chunks()
    return columns


def _figures(report: Report, c: dict) -> None:
    """Counts, the timeline, throughput, idle time, the slowest attempts and failures by error."""
    ok = c["ok"]
    done = c["succeeded"] + c["failed"]
    report.attempts, report.failed_attempts, report.items = len(ok), int((~ok).sum()), int(done.sum())
    starts, ends = c["start"], c["start"] + c["seconds"]
    start, end = float(starts.min()), float(ends.max())
    if report.phase in ("Running", "Planning"):
        end = max(end, report.generated)
    width = max(end - start, 1e-6)
    report.start, report.end = start, end
    bin_seconds = max(width / THROUGHPUT_COLUMNS, THROUGHPUT_MIN_SECONDS)
    bins = max(1, math.ceil(width / bin_seconds))
    where = np.minimum(((ends - start) / bin_seconds).astype(np.int64), bins - 1)
    report.throughput = (np.bincount(where, weights=done, minlength=bins) / bin_seconds).tolist()
    report.throughput_seconds = bin_seconds
    _workers(report, c, ok, starts - start, ends - start, width / TIMELINE_COLUMNS)
    for i in np.argsort(-c["seconds"], kind="stable")[:SLOWEST]:
        line = AttemptLine(int(c["miniBatch"][i]), 0, int(c["shard"][i]), c["pod"][i].as_py(),
                           None if c["worker"][i] < 0 else int(c["worker"][i]), int(c["attempt"][i]), "",
                           float(c["seconds"][i]), None, None, int(c["items"][i]), int(c["succeeded"][i]),
                           int(c["failed"][i]), c["status"][i].as_py(), c["error"][i].as_py())
        report.slowest.append(Attempt(line, float(starts[i])))
    failing = np.flatnonzero(~ok | (c["failed"] > 0))  # failed and retried attempts, and partly failed ones
    errors, statuses = c["error"].take(failing).to_pylist(), c["status"].take(failing).to_pylist()
    _group(report, ((int(c["miniBatch"][i]), error or status, int(c["failed"][i]))
                    for i, error, status in zip(failing, errors, statuses)))


def _workers(report: Report, c: dict, ok: np.ndarray, a: np.ndarray, b: np.ndarray,
             step: float) -> None:
    """Each worker's busy share of every column of the timeline, its failed attempts per column and
    its idle time. A worker's busy time up to t is F(t) = sum(t - a for a < t) - sum(t - b for b < t)
    over its attempts [a, b): computed at the column edges from sorted starts and ends."""
    columns = TIMELINE_COLUMNS
    edges = np.arange(columns + 1) * step
    key = c["shard"] * (1 << 20) + np.where(c["worker"] < 0, (1 << 20) - 1, c["worker"])
    keys, which = np.unique(key, return_inverse=True)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(keys) + 1))
    span = columns * step
    for w, k in enumerate(keys[:MAX_WORKER_ROWS]):
        rows = order[bounds[w]:bounds[w + 1]]
        busy_until = _covered(np.sort(a[rows]), edges) - _covered(np.sort(b[rows]), edges)
        busy = np.clip(np.diff(busy_until) / step, 0.0, 1.0)
        failed_at = np.minimum((b[rows][~ok[rows]] / step).astype(np.int64), columns - 1)
        failures = np.bincount(failed_at, minlength=columns)
        seconds = float(c["seconds"][rows].sum())
        worker = int(k % (1 << 20))
        name = f"shard-{int(k >> 20)}-worker-{'?' if worker == (1 << 20) - 1 else worker}"
        report.workers.append(WorkerRow(name, busy.tolist(), failures.tolist(), seconds, len(rows),
                                        max(0.0, span - seconds)))
    report.more_workers = max(0, len(keys) - MAX_WORKER_ROWS)


def _covered(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """sum(t - x for x in `times` if x < t) at each edge t; `times` sorted."""
    count = np.searchsorted(times, edges, side="left")
    total = np.concatenate(([0.0], np.cumsum(times)))[count]
    return count * edges - total


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


_NUMBER = re.compile(r"\d+(\.\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _kind(error: str) -> str:
    """What errors of one kind share: the message (a traceback's last line), its numbers and quoted
    names masked ("cannot parse item 12" and "... item 97" are one kind)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    line = lines[-1] if lines and lines[0].startswith("Traceback") else lines[0] if lines else "(no message)"
    return _NUMBER.sub("#", _QUOTED.sub("'…'", line))[:300]


def _group(report: Report, errors) -> None:
    """Errors (mini-batch, error text, items) grouped by kind, the most frequent first."""
    groups: dict[str, ErrorGroup] = {}
    for mini_batch, error, items in errors:
        key = _kind(error)
        group = groups.setdefault(key, ErrorGroup(key))
        group.attempts += 1
        group.items += items
        if len(group.examples) < EXAMPLES_PER_ERROR:
            group.examples.append((mini_batch, error[:4000]))
    ordered = sorted(groups.values(), key=lambda g: (-g.attempts, g.error))
    report.error_groups = ordered[:MAX_ERROR_GROUPS]
    report.more_error_groups = max(0, len(ordered) - MAX_ERROR_GROUPS)


def _failures_from_errors(fs, layout, report: Report) -> None:
    """Without attempt lines, the failed items of errors.jsonl (a merged run) grouped by error."""
    try:
        text = fs.cat_file(layout.errors).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    records = []
    for line in text.splitlines():
        try:
            e = ErrorLine.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):  # a line cut short, or not an error line
            continue
        records.append((e.mini_batch, e.error, e.items))
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
