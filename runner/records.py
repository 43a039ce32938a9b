"""The records a run writes and reads back, as types: one place for their JSON shapes.

    ShardRange  plan/plan.json "shards": which mini-batches a shard runs
    DoneRecord  a line of commits/NNNNN/*.jsonl (done/NNNNNNNNN.json before group commits): a
                committed mini-batch, its counts, errors.jsonl lines and where its part lies
    ErrorLine   a line of errors.jsonl (carried, until the merge, by its DoneRecord's `errors`):
                failed items of a mini-batch and why
    ShardResult shards/NNNNN.json: a finished shard, for the merge
    ReuseEntry  _parallelrun/cache/<fingerprint>.json: a succeeded step or run that a later one may reuse
    OutputOwner _parallelrun/cache/outputs/<hash of a URI>.json: the step execution that last claimed an
                output place (pipelines/owners.py)
    TerminationMessage  /dev/termination-log: what a scoring or merge pod tells the operator
    ClaimRecord claims/NNNNNNNNN: which pod index holds a chunk of the plan
    Heartbeat   claims/alive-NNNNN: a scoring pod's sign of life, and whether it is idle
    ShardProgress  progress/NNNNN.json: a scoring pod's counts so far, and each chunk's it holds
    RunSummary  summary.json: a finished run's outcome, counts and where its files are
    RunResult   `parallelrun run -o json`'s document (a pipeline's batchInference step's result): the exit
                code and status, the run's summary where it got as far as one, else why not
    LockHolder  _parallelrun/<run-id>.lock: the process that runs a run id (lock.py), its lease's heartbeat
    AttemptLine a line of report/minibatches.csv: one attempt at a mini-batch (carried, until the merge,
                by its DoneRecord's `report`: the CSV lines of its attempts)
    ResourceSample  a line of report/resources.csv: one worker's (or the pod's) CPU, memory and GPU use

A schema in these records is text (schemas.schema_to_text); the plan header's is schemas.to_header's.

`to_dict()` writes the keys runs have always written, and `from_dict()` reads runs
written before a key existed (a default for each key added since), so a run planned
or scored by an earlier version still resumes and merges.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .accounting import Counts
from .contract import TERMINATION_MESSAGE_LIMIT


@dataclass(frozen=True)
class ShardRange:
    """Shard `index` runs the mini-batches first .. first + count - 1 of the plan (contiguous).
    `items` is None where only reading tells (csv/jsonl cut by size)."""

    index: int
    first: int
    count: int
    items: int | None
    bytes: int

    @property
    def mini_batch_ids(self) -> range:
        return range(self.first, self.first + self.count)

    def to_dict(self) -> dict:
        return {"index": self.index, "first": self.first, "count": self.count, "items": self.items,
                "bytes": self.bytes}

    @classmethod
    def from_dict(cls, d: dict) -> ShardRange:
        return cls(d["index"], d["first"], d["count"], d["items"], d["bytes"])


@dataclass  # not frozen: a job with a million failed items makes a million of them, twice
class ErrorLine:
    """A line of errors.jsonl: `items` failed items of mini-batch `mini_batch` (every kind of failure
    has the same fields). `item` is the failed item where one line stands for one (a file, an
    item run() named), else None; `source` what the mini-batch read: {"files": [...]} or
    {"file": ..., and "rows", "bytes", "key" where it has them}; `traceback` the error's, where
    there was an exception."""

    mini_batch: int
    item: str | None
    source: dict
    items: int
    attempts: int
    error: str
    traceback: str | None = None

    def to_dict(self) -> dict:
        return {"miniBatch": self.mini_batch, "item": self.item, "source": self.source, "items": self.items,
                "attempts": self.attempts, "error": self.error, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, d: dict) -> ErrorLine:
        """Also the lines of the first runs: a file's without `source` and `items`, a row range's without `item`."""
        return cls(d["miniBatch"], d.get("item"), d.get("source") or {}, d.get("items", 1), d.get("attempts", 1),
                   d["error"], d.get("traceback"))


@dataclass
class DoneRecord:
    """A committed mini-batch: from the moment its record exists it is never run again.

    `errors` are its errors.jsonl lines; `schema` its part's columns (schemas.schema_to_text),
    None for a part of plain lines or no part; `part` where its part lies: (file in the
    parts folder, offset, length), None where it has none or where it is the part file
    of its own that runs before group commits wrote."""

    id: int
    status: Literal["succeeded", "failed"]
    items: int
    succeeded: int
    failed: int
    attempts: int
    errors: list[ErrorLine] = field(default_factory=list)
    schema: str | None = None
    part: tuple[str, int, int] | None = None
    report: str | None = None  # its attempts' lines of report/minibatches.csv (AttemptLine), CSV text

    @property
    def counts(self) -> Counts:
        failed_batch = self.status == "failed"
        return Counts(0 if failed_batch else 1, 1 if failed_batch else 0, self.succeeded, self.failed)

    def to_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "items": self.items, "attempts": self.attempts,
                "errors": [e.to_dict() for e in self.errors], "schema": self.schema, "succeeded": self.succeeded,
                "failed": self.failed, "part": self.part, "report": self.report}

    @classmethod
    def from_dict(cls, d: dict) -> DoneRecord:
        part = d.get("part")
        return cls(id=d["id"], status=d["status"], items=d["items"], succeeded=d["succeeded"], failed=d["failed"],
                   attempts=d.get("attempts", 1), errors=[ErrorLine.from_dict(e) for e in d.get("errors", ())],
                   schema=d.get("schema"),
                   part=tuple(part) if part else None, report=d.get("report"))


@dataclass
class ShardResult:
    """A finished shard, for the merge: counts, and which committed mini-batches have
    no part (nothing succeeded) and which columns each part has."""

    index: int
    counts: Counts
    threshold_reason: str | None = None  # why this shard alone exceeded a threshold
    failed_ids: list[int] = field(default_factory=list)  # mini-batches with failed items
    without_part: list[int] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)  # distinct part schemas, in plan order of first use
    schema_of: dict[int, int] = field(default_factory=dict)  # mini-batch → index in schemas, where not 0
    empty_schema: str | None = None  # the merge's: the columns of the first table run() returned without rows

    def to_dict(self) -> dict:
        return {"shard": self.index, **self.counts.to_dict(), "thresholdExceeded": self.threshold_reason,
                "failedMiniBatches": self.failed_ids, "withoutPart": self.without_part,
                "schemas": self.schemas, "schemaOf": {str(k): v for k, v in self.schema_of.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> ShardResult:
        return cls(index=d["shard"], counts=Counts.from_dict(d), threshold_reason=d.get("thresholdExceeded"),
                   failed_ids=list(d.get("failedMiniBatches", [])), without_part=list(d.get("withoutPart", [])),
                   schemas=list(d.get("schemas", [])),
                   schema_of={int(k): v for k, v in d.get("schemaOf", {}).items()})


@dataclass(frozen=True)
class ReuseEntry:
    """A success a later step (or run, with allowReuse) of the same fingerprint may stand on:
    its outputs, the run and step that made them, when, and (a pipeline step) the execution
    that claimed its output places."""

    fingerprint: str
    outputs: dict[str, str]
    run: str
    step: str
    finished_at: str  # RFC 3339, UTC
    execution: str | None = None

    def to_dict(self) -> dict:
        d = {"fingerprint": self.fingerprint, "outputs": dict(self.outputs), "run": self.run, "step": self.step,
             "finishedAt": self.finished_at}
        if self.execution is not None:
            d["execution"] = self.execution
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ReuseEntry:
        """Raises ValueError for anything but an entry (a file half written, or another's)."""
        if not isinstance(d, dict) or not isinstance(d.get("fingerprint"), str) or not isinstance(d.get("run"), str):
            raise ValueError("not a reuse index entry")
        outputs = d.get("outputs") or {}
        if not isinstance(outputs, dict):
            raise ValueError("not a reuse index entry")
        return cls(d["fingerprint"], dict(outputs), d["run"], str(d.get("step") or ""), str(d.get("finishedAt") or ""),
                   d.get("execution"))


@dataclass(frozen=True)
class OutputOwner:
    """Step execution `execution` (pipelines/owners.new_execution) claimed output place `uri` before it
    started writing it: an index entry of another execution must not hand that place out."""

    uri: str
    execution: str

    def to_dict(self) -> dict:
        return {"uri": self.uri, "execution": self.execution}

    @classmethod
    def from_dict(cls, d: dict) -> OutputOwner:
        """Raises ValueError for anything but a claim (a file half written, or another's)."""
        if not isinstance(d, dict) or not isinstance(d.get("uri"), str) or not isinstance(d.get("execution"), str):
            raise ValueError("not an output owner claim")
        return cls(d["uri"], d["execution"])


@dataclass(frozen=True)
class TerminationMessage:
    """What a pod leaves in its termination log for the operator (runner contract): a scoring
    pod its shard's counts and, when it failed, why; the merge its status, reason and output.
    Kubernetes keeps 4 KB of it: a long reason is cut to fit."""

    counts: Counts | None = None
    reason: str | None = None
    status: str | None = None  # the merge's: Succeeded | Failed
    output: dict | None = None  # the merge's output file

    def to_text(self) -> str:
        message = self.counts.to_dict() if self.counts is not None else {}
        if self.status is not None:
            message.update(status=self.status, reason=self.reason, output=self.output)
        elif self.reason is not None:
            message["reason"] = self.reason
        encoded = json.dumps(message)
        excess = len(encoded.encode()) - TERMINATION_MESSAGE_LIMIT
        if excess > 0 and self.reason:
            message["reason"] = self.reason[:len(self.reason) - excess - 3] + "..."
            encoded = json.dumps(message)
        return encoded

    @classmethod
    def from_text(cls, text: str | None) -> TerminationMessage | None:
        """The message a runner left, or None where the pod left something else (a log tail)."""
        try:
            d = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(d, dict):
            return None
        counts = Counts.from_dict(d) if "miniBatches" in d or "items" in d else None
        return cls(counts, d.get("reason"), d.get("status"), d.get("output"))


@dataclass(frozen=True)
class ClaimRecord:
    """Chunk `chunk` (its first mini-batch) is held by pod index `index`; `token` names the pod
    attempt that holds it, so a takeover of this claim is keyed by it (claims.py)."""

    chunk: int
    index: int
    token: str
    pod: str
    at: float

    def to_dict(self) -> dict:
        return {"chunk": self.chunk, "index": self.index, "token": self.token, "pod": self.pod, "at": self.at}

    @classmethod
    def from_dict(cls, d: dict) -> ClaimRecord:
        return cls(d["chunk"], d["index"], d["token"], d["pod"], d["at"])


@dataclass(frozen=True)
class Heartbeat:
    """Pod index `index` (attempt `token`) was alive at `at` (its own clock); `idle`: every chunk
    it holds is committed (it waits for the others, or it ended), so its claims are done, not
    abandoned, even once it falls silent."""

    index: int
    token: str
    at: float
    idle: bool = False

    def to_dict(self) -> dict:
        return {"index": self.index, "token": self.token, "at": self.at, "idle": self.idle}

    @classmethod
    def from_dict(cls, d: dict) -> Heartbeat:
        return cls(d["index"], d["token"], d["at"], d.get("idle", False))


@dataclass
class ShardProgress:
    """A scoring pod's counts so far, and the counts of each chunk it holds by the chunk's first
    mini-batch: every commit of the chunk, earlier holders' included (a chunk taken over from a
    dead pod, a pod's retry), so that work counts wherever it was done (progress_total)."""

    counts: Counts = field(default_factory=Counts)
    chunks: dict[int, Counts] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.counts.to_dict(), "chunks": {str(first): [c.mini_batches_succeeded, c.mini_batches_failed,
                                                                  c.items_succeeded, c.items_failed]
                                                     for first, c in sorted(self.chunks.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> ShardProgress:
        return cls(Counts.from_dict(d), {int(first): Counts(*values) for first, values in d.get("chunks", {}).items()})


def progress_total(progresses: Iterable[ShardProgress]) -> Counts:
    """What the progress files say is committed, counting each chunk once: by the file that saw
    most of it (a chunk's count only grows, and whoever holds it now has seen every commit)."""
    best: dict[int, Counts] = {}
    for progress in progresses:
        for first, counts in progress.chunks.items():
            if first not in best or counts.mini_batches > best[first].mini_batches:
                best[first] = counts
    total = Counts()
    for counts in best.values():
        total.add(counts)
    return total


@dataclass
class RunSummary:
    """summary.json, written by the merge: the run's outcome (status Succeeded or Failed, and
    the threshold's reason), counts against the plan's, and where its output, errors.jsonl and
    this file are. Local mode adds the run's `seconds` and worker `logs` to what it returns."""

    run_id: str
    status: str  # Succeeded | Failed
    reason: str | None
    counts: Counts
    plan_mini_batches: int
    plan_items: int | None  # None where only reading tells (csv/jsonl cut by size)
    plan_bytes: int
    thresholds: dict  # errorThreshold, miniBatchErrorThreshold, allowedFailedPercent, as the spec had them
    output: dict | None  # {uri, bytes} of the output file; None: summaryOnly, or the run failed
    errors: str  # errors.jsonl's URI
    summary: str  # this file's URI
    finished_at: str
    previous_output: str | None = None  # where an earlier run's output was moved (a failed run's)
    warning: dict | None = None  # {reason, message}: succeeded with every item failed
    seconds: float | None = None
    logs: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    @property
    def output_or_summary(self) -> str:
        """What stands for the run's result: its output file, or (summaryOnly) this summary."""
        return (self.output or {}).get("uri") or self.summary

    def to_dict(self) -> dict:
        counts = self.counts.to_dict()
        d = {"runId": self.run_id, "status": self.status, "reason": self.reason,
             "miniBatches": {**counts["miniBatches"], "total": self.plan_mini_batches}, "items": counts["items"],
             "plan": {"miniBatches": self.plan_mini_batches, "items": self.plan_items, "bytes": self.plan_bytes},
             "thresholds": self.thresholds, "output": self.output, "errors": self.errors, "summary": self.summary,
             "finishedAt": self.finished_at}
        for key, value in (("previousOutput", self.previous_output), ("warning", self.warning),
                           ("seconds", self.seconds), ("logs", self.logs)):
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunSummary:
        plan = d.get("plan") or {}
        return cls(d["runId"], d["status"], d.get("reason"), Counts.from_dict(d), plan.get("miniBatches", 0),
                   plan.get("items"), plan.get("bytes", 0), d.get("thresholds") or {}, d.get("output"),
                   d.get("errors", ""), d.get("summary", ""), d.get("finishedAt", ""), d.get("previousOutput"),
                   d.get("warning"), d.get("seconds"), d.get("logs"))


@dataclass(frozen=True)
class RunResult:
    """What `parallelrun run FILE -o json` prints: the file, its kind, the exit code and status
    (Succeeded, Failed, Interrupted, Invalid; a pipeline's phase), then the run's summary where
    it has one (its keys, its status replaced by this one), `error` the one-line reason it did
    not succeed, `errors` (Invalid) one "path: problem; fix" line each."""

    file: str
    kind: str
    exit_code: int
    status: str
    summary: RunSummary | None = None
    error: str | None = None
    errors: list[str] | None = None

    def to_dict(self) -> dict:
        d = {"file": self.file, "kind": self.kind, "exitCode": self.exit_code,
             **(self.summary.to_dict() if self.summary is not None else {}), "status": self.status}
        if self.error is not None:
            d["error"] = self.error
        if self.errors is not None:
            d["errors"] = self.errors
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        """Raises ValueError for anything but a result (a process that ended before it printed one)."""
        if not isinstance(d, dict) or not isinstance(d.get("status"), str):
            raise ValueError("not a parallelrun run result")
        summary = RunSummary.from_dict(d) if "runId" in d else None
        return cls(str(d.get("file", "")), str(d.get("kind", "")), int(d.get("exitCode", 0)), d["status"], summary,
                   d.get("error"), None if summary is not None else d.get("errors"))


@dataclass
class LockHolder:
    """The process that holds a run's lock (lock.py): its pid and host, since when (RFC 3339, UTC),
    `token` naming this holding, and (a lease on object storage) when it last said it is alive
    (epoch seconds). A lock found held whose file is still empty has a holder of None fields."""

    pid: int | None = None
    host: str | None = None
    token: str | None = None
    since: str | None = None
    heartbeat: float | None = None

    def to_dict(self) -> dict:
        d = {"pid": self.pid, "host": self.host, "token": self.token, "since": self.since, "heartbeat": self.heartbeat}
        return {key: value for key, value in d.items() if value is not None}

    @classmethod
    def from_dict(cls, d: dict) -> LockHolder:
        """Raises ValueError for anything but a holder (a file half written)."""
        if not isinstance(d, dict):
            raise ValueError("not a lock holder")
        return cls(d.get("pid"), d.get("host"), d.get("token"), d.get("since"), d.get("heartbeat"))

    def to_text(self) -> str:
        """The lock file's text (from_text reads it)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_text(cls, text: str | bytes) -> LockHolder:
        """The holder a lock file names; an empty file (a holder still writing it): one of None fields.
        Raises ValueError for a file half written."""
        return cls.from_dict(json.loads(text or "{}"))


def _optional(kind, value):
    """A CSV cell read back: '' and None are None, else `kind(value)`."""
    return None if value is None or value == "" else kind(value)


ERROR_CHARS = 200  # an AttemptLine's error, at most


@dataclass(frozen=True)
class AttemptLine:
    """One attempt at a mini-batch, a line of report/minibatches.csv (columns: ATTEMPT_COLUMNS).

    `chunk` is the first mini-batch of the chunk it belongs to (as in ClaimRecord); `shard` the
    pod index that ran it, `pod` that pod's host name, `worker` the worker process in the pod
    (0 .. processCountPerNode - 1). `start` is when the worker took it up (ISO 8601, UTC);
    `seconds` its wall time to the end of the attempt (reading it, where the worker read it
    when its turn came, run(), writing its result); `run_seconds` inside run();
    `read_seconds` reading its input (ahead of time, overlapping the previous run(), where
    the input is remote). Both are None where the worker could not tell (a worker that
    died or overran runInvocationTimeout: `seconds` is then measured by the pool).

    `status`: "succeeded" (its last attempt; it may have failed items, `failed` counts them),
    "failed" (its last attempt, which failed: every item failed) or "retried" (a failed
    attempt another attempt followed). Every committed mini-batch has exactly one line
    that is not "retried", and as many lines as its DoneRecord's attempts. `error` is the
    attempt's error on one line, cut to ERROR_CHARS; "" when there is none.
    `items`/`succeeded`/`failed` are what the attempt counted: a retried one counts none
    succeeded or failed (its items are tried again); `items` is 0 where it failed before its
    input was read and the plan has no count (csv/jsonl cut by size).
    """

    mini_batch: int
    chunk: int
    shard: int
    pod: str
    worker: int | None  # None: not known (a mini-batch that failed before a worker took it)
    attempt: int
    start: str
    seconds: float
    run_seconds: float | None
    read_seconds: float | None
    items: int
    succeeded: int
    failed: int
    status: Literal["succeeded", "failed", "retried"]
    error: str = ""

    def to_dict(self) -> dict:
        return {"miniBatch": self.mini_batch, "chunk": self.chunk, "shard": self.shard, "pod": self.pod,
                "worker": self.worker, "attempt": self.attempt, "start": self.start, "seconds": self.seconds,
                "runSeconds": self.run_seconds, "readSeconds": self.read_seconds, "items": self.items,
                "succeeded": self.succeeded, "failed": self.failed, "status": self.status, "error": self.error}

    @classmethod
    def from_dict(cls, d: dict) -> AttemptLine:
        """From to_dict() or a row of csv.DictReader (every value text; '' for None)."""
        return cls(mini_batch=int(d["miniBatch"]), chunk=int(d["chunk"]), shard=int(d["shard"]), pod=str(d["pod"]),
                   worker=_optional(int, d.get("worker")), attempt=int(d["attempt"]), start=str(d["start"]),
                   seconds=float(d["seconds"]), run_seconds=_optional(float, d.get("runSeconds")),
                   read_seconds=_optional(float, d.get("readSeconds")), items=int(d["items"]),
                   succeeded=int(d["succeeded"]), failed=int(d["failed"]), status=d["status"],
                   error=d.get("error") or "")


ATTEMPT_COLUMNS = tuple(AttemptLine(0, 0, 0, "", 0, 1, "", 0.0, None, None, 0, 0, 0, "succeeded").to_dict())


@dataclass(frozen=True)
class ResourceSample:
    """A line of report/resources.csv (columns: RESOURCE_COLUMNS): what one worker process of
    shard `shard` (on host `pod`) used at `time` (ISO 8601, UTC), or, `worker` "pod", the
    whole pod: its own process, the workers and whatever they started.

    `cpu` is percent of one core since the previous sample (200: two cores busy), `rss` the
    resident memory in bytes. With GPUs, `gpu` is the device index the worker uses (its
    first one; None without), `gpu_utilization` that device's utilization (%), `gpu_memory`
    the bytes this process holds on it (the device's used memory where NVML does not tell
    per process); the pod's line sums the workers' GPU memory."""

    time: str
    pod: str
    shard: int
    worker: str  # "0", "1", ... or "pod"
    pid: int
    cpu: float
    rss: int
    gpu: int | None = None
    gpu_utilization: float | None = None
    gpu_memory: int | None = None

    def to_dict(self) -> dict:
        return {"time": self.time, "pod": self.pod, "shard": self.shard, "worker": self.worker, "pid": self.pid,
                "cpu": self.cpu, "rss": self.rss, "gpu": self.gpu, "gpuUtilization": self.gpu_utilization,
                "gpuMemory": self.gpu_memory}

    @classmethod
    def from_dict(cls, d: dict) -> ResourceSample:
        """From to_dict() or a row of csv.DictReader (every value text; '' for None)."""
        return cls(time=str(d["time"]), pod=str(d["pod"]), shard=int(d["shard"]), worker=str(d["worker"]),
                   pid=int(d["pid"]), cpu=float(d["cpu"]), rss=int(d["rss"]), gpu=_optional(int, d.get("gpu")),
                   gpu_utilization=_optional(float, d.get("gpuUtilization")),
                   gpu_memory=_optional(int, d.get("gpuMemory")))


RESOURCE_COLUMNS = tuple(ResourceSample("", "", 0, "pod", 0, 0.0, 0).to_dict())
