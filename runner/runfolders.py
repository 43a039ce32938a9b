"""The runs under an output (`<output.uri>/_parallelrun/<run-id>/`): which there are, the state
of each, how far a running one has come, and removing old ones. `parallelrun status`, `list`
and `clean` stand on it, on a local disk as on object storage.

A run made in local mode is running while a process holds its lock (lock.py); a run on a
cluster (no lock) while a scoring pod that is not idle has a heartbeat (`claims/alive-NNNNN`)
fresher than claims.STALE_SECONDS.
"""

from __future__ import annotations

import datetime
import json
import posixpath
import re
import time
from dataclasses import dataclass

from .accounting import Counts
from .claims import HEARTBEAT_PREFIX, STALE_SECONDS
from .commits import read_commits
from .contract import PermanentError
from .layout import Layout
from .lock import RunLock, RunLocked, held_by, lock_path
from .merge import read_summary
from .planning import read_plan
from .records import Heartbeat, LockHolder
from .storage import filesystem, join

WORK_FOLDER = "_parallelrun"
NOT_RUNS = ("cache", "logs")  # a pipeline workdir's reuse index and step logs sit beside its runs
RUNNING, PLANNING, INCOMPLETE = "Running", "Planning", "Incomplete"


class RunNotFound(PermanentError, LookupError):
    """No run where the user pointed; the message says what to give instead."""


@dataclass
class RunStatus:
    """What `parallelrun status` and `list` tell of one run. Times are epoch seconds."""

    run_id: str
    uri: str
    phase: str  # Running | Planning | Incomplete (stopped before its merge) | Succeeded | Failed
    started: float | None
    finished: float | None
    counts: Counts
    total: int | None  # planned mini-batches
    total_items: int | None
    eta_seconds: float | None = None
    holder: LockHolder | None = None  # the local process that runs it
    reason: str | None = None
    size: int | None = None

    @property
    def running(self) -> bool:
        return self.phase in (RUNNING, PLANNING)

    def to_dict(self) -> dict:
        return {"runId": self.run_id, "uri": self.uri, "phase": self.phase, "startTime": _rfc3339(self.started),
                "completionTime": _rfc3339(self.finished), **self.counts.to_dict(),
                "planned": {"miniBatches": self.total, "items": self.total_items},
                "etaSeconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
                "heldBy": self.holder.to_dict() if self.holder is not None else None, "reason": self.reason,
                "bytes": self.size}


def _rfc3339(t: float | None) -> str | None:
    return None if t is None else datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="seconds")


def locate(uri: str) -> tuple[object, Layout]:
    """The run a user names: a run folder (`<output>/_parallelrun/<run-id>`) or an output URI
    (its most recently started run). Raises RunNotFound saying what to give."""
    fs, path = filesystem(uri)
    path = path.rstrip("/")
    parent, run_id = posixpath.split(path)
    if posixpath.basename(parent) == WORK_FOLDER:
        if not fs.isdir(path):
            raise RunNotFound(f"{uri}: no such run folder; `parallelrun list {posixpath.dirname(parent)}` "
                              "lists the runs there")
        return fs, Layout(posixpath.dirname(parent), run_id)
    ids = run_ids(fs, path)
    if not ids:
        raise RunNotFound(f"{uri}: no run here; give a job's output URI (spec.output.uri) or a run folder "
                          f"<output>/{WORK_FOLDER}/<run-id>")
    layouts = [Layout(path, i) for i in ids]
    return fs, max(layouts, key=lambda layout: started_at(fs, layout) or 0)


def run_ids(fs, output_path: str) -> list[str]:
    """The runs under an output, sorted by id."""
    try:
        entries = fs.ls(join(output_path, WORK_FOLDER), detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for e in entries if e["type"] == "directory"
                  and (name := posixpath.basename(e["name"].rstrip("/"))) not in NOT_RUNS)


def _modified(fs, path: str) -> float | None:
    """When `path` was last written (epoch seconds), whatever the store calls it; None if absent."""
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    for key in ("mtime", "last_modified", "LastModified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def started_at(fs, layout: Layout) -> float | None:
    """When the run was planned (its plan header written); a run not yet planned: its folder."""
    return _modified(fs, layout.plan_header) or _modified(fs, layout.root)


def busy_pods(fs, layout: Layout, now: float) -> list[Heartbeat]:
    """The heartbeats younger than claims.STALE_SECONDS of scoring pods that still have work."""
    try:
        paths = fs.ls(layout.claims_dir, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    beats = []
    for path in paths:
        if not posixpath.basename(path).startswith(HEARTBEAT_PREFIX):
            continue
        try:
            beat = Heartbeat.from_dict(json.loads(fs.cat_file(path)))
        except (FileNotFoundError, ValueError, KeyError):
            continue  # being rewritten, or gone
        if now - beat.at < STALE_SECONDS and not beat.idle:
            beats.append(beat)
    return beats


def is_running(fs, layout: Layout, now: float | None = None) -> bool:
    return _running(fs, layout, time.time() if now is None else now)[0]


def _running(fs, layout: Layout, now: float) -> tuple[bool, LockHolder | None]:
    """Whether the run is running, and the local process that runs it. A run made in local mode has
    a lock: it runs while the lock is held, whatever its heartbeats say (a killed run leaves them
    fresh a while); a run on a cluster has none: it runs while a busy pod's heartbeat is fresh."""
    holder = held_by(fs, layout.output_path, layout.run_id)
    if holder is not None:
        return True, holder
    if fs.exists(lock_path(layout.output_path, layout.run_id)):
        return False, None
    return bool(busy_pods(fs, layout, now)), None


def describe(fs, layout: Layout, now: float | None = None, size: bool = False) -> RunStatus:
    """The state of one run: finished (its summary), running (a lock or a pod's heartbeat), or
    stopped before its merge; the counts so far and, running, an ETA from the rate since it started."""
    now = time.time() if now is None else now
    running, holder = _running(fs, layout, now)
    summary = read_summary(fs, layout)
    plan = read_plan(fs, layout)
    started = started_at(fs, layout)
    uri = layout.root
    total = plan.total_mini_batches if plan is not None else None
    total_items = plan.total_items if plan is not None else None
    if summary is not None and not running:
        finished = _modified(fs, layout.summary)
        return RunStatus(layout.run_id, uri, summary.status, started, finished, summary.counts, total,
                         total_items, reason=summary.reason, size=_size(fs, layout) if size else None)
    counts = Counts()
    if plan is not None:
        for record in read_commits(fs, layout, range(plan.total_mini_batches)).values():
            counts.add(record.counts)
    phase = (RUNNING if plan is not None else PLANNING) if running else INCOMPLETE
    eta = None
    if running and plan is not None and started is not None and counts.mini_batches:
        eta = (now - started) / counts.mini_batches * (plan.total_mini_batches - counts.mini_batches)
    reason = None if running else ("not merged, and nothing scores it: a local run was stopped (run the same "
                                   "job again to resume it), or a cluster's merge is under way" if plan
                                   else "stopped before its plan was written")
    return RunStatus(layout.run_id, uri, phase, started, None, counts, total, total_items, eta, holder, reason,
                     _size(fs, layout) if size else None)


def _size(fs, layout: Layout) -> int:
    try:
        return int(fs.du(layout.root, total=True))
    except FileNotFoundError:
        return 0


def running_run(uri: str) -> RunStatus | None:
    """The run under an output that is running now, as far as it has come; None while none is."""
    fs, path = filesystem(uri)
    now = time.time()
    for run_id in run_ids(fs, path.rstrip("/")):
        layout = Layout(path.rstrip("/"), run_id)
        if is_running(fs, layout, now):
            return describe(fs, layout, now)
    return None


def list_runs(uri: str, now: float | None = None) -> list[RunStatus]:
    """Every run under an output, the most recently started first."""
    fs, path = filesystem(uri)
    runs = [describe(fs, Layout(path.rstrip("/"), i), now, size=True) for i in run_ids(fs, path.rstrip("/"))]
    return sorted(runs, key=lambda r: r.started or 0, reverse=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str = "--older-than") -> float:
    """'90s', '30m', '12h', '7d', '2w' as seconds; raises ValueError naming the option and the fix."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{option} {text!r}: not a duration; use a number and a unit (s, m, h, d or w), e.g. 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass
class Cleaning:
    """What `clean` removed (or, a dry run, would remove), and the runs it kept because they run."""

    removed: list[RunStatus]
    running: list[RunStatus]

    def to_dict(self) -> dict:
        return {"removed": [r.to_dict() for r in self.removed], "keptRunning": [r.to_dict() for r in self.running],
                "bytes": sum(r.size or 0 for r in self.removed)}


def clean(uri: str, keep: int | None = None, older_than: float | None = None, dry_run: bool = False,
          now: float | None = None) -> Cleaning:
    """Remove the run folders under an output beyond the `keep` most recently started and started
    more than `older_than` seconds ago; at least one of the two is given. A running run is never
    removed: each is removed holding its lock (a local lock file stays, as RunLock leaves it), and
    nothing outside `_parallelrun/<run-id>` (the output file) is touched."""
    if keep is None and older_than is None:
        raise ValueError("give --keep N, --older-than D or both: which runs to remove")
    now = time.time() if now is None else now
    fs, path = filesystem(uri)
    runs = list_runs(uri, now)
    candidates = runs[keep:] if keep is not None else runs
    if older_than is not None:
        candidates = [r for r in candidates if r.started is not None and now - r.started > older_than]
    removed, running = [], []
    for run in candidates:
        layout = Layout(path.rstrip("/"), run.run_id)
        if run.running or busy_pods(fs, layout, time.time()):
            running.append(run)
            continue
        try:
            with RunLock(fs, layout.output_path, run.run_id):  # no local run starts while its folder goes
                if not dry_run:
                    fs.rm(layout.root, recursive=True)
        except RunLocked:  # it started since it was listed
            running.append(run)
            continue
        removed.append(run)
    return Cleaning(removed, running)
