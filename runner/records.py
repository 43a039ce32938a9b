"""The records a run writes and reads back, as types: one place for their JSON shapes.

    ShardRange  plan/plan.json "shards": which mini-batches a shard runs
    DoneRecord  a line of commits/NNNNN/*.jsonl (done/NNNNNNNNN.json before group commits): a
                committed mini-batch, its counts, errors.jsonl lines and where its part lies
    ShardResult shards/NNNNN.json: a finished shard, for the merge
    ClaimRecord claims/NNNNNNNNN: which pod index holds a chunk of the plan
    Heartbeat   claims/alive-NNNNN: a scoring pod's sign of life, and whether it is idle

`to_dict()` writes the keys runs have always written, and `from_dict()` reads runs
written before a key existed (a default for each key added since), so a run planned
or scored by an earlier version still resumes and merges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .accounting import Counts


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
    def from_dict(cls, d: dict) -> "ShardRange":
        return cls(d["index"], d["first"], d["count"], d["items"], d["bytes"])


@dataclass
class DoneRecord:
    """A committed mini-batch: from the moment its record exists it is never run again.

    `errors` are its errors.jsonl lines; `schema` its part's columns (outputs.schema_to_text),
    None for a part of plain lines or no part; `part` where its part lies: (file in the
    parts folder, offset, length), None where it has none or where it is the part file
    of its own that runs before group commits wrote."""

    id: int
    status: Literal["succeeded", "failed"]
    items: int
    succeeded: int
    failed: int
    attempts: int
    errors: list[dict] = field(default_factory=list)
    schema: str | None = None
    part: tuple[str, int, int] | None = None

    @property
    def counts(self) -> Counts:
        failed_batch = self.status == "failed"
        return Counts(0 if failed_batch else 1, 1 if failed_batch else 0, self.succeeded, self.failed)

    def to_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "items": self.items, "attempts": self.attempts,
                "errors": self.errors, "schema": self.schema, "succeeded": self.succeeded, "failed": self.failed, "part": self.part}

    @classmethod
    def from_dict(cls, d: dict) -> "DoneRecord":
        part = d.get("part")
        return cls(id=d["id"], status=d["status"], items=d["items"], succeeded=d["succeeded"], failed=d["failed"],
                   attempts=d.get("attempts", 1), errors=d.get("errors", []), schema=d.get("schema"),
                   part=tuple(part) if part else None)


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

    def to_dict(self) -> dict:
        return {"shard": self.index, **self.counts.to_dict(), "thresholdExceeded": self.threshold_reason,
                "failedMiniBatches": self.failed_ids, "withoutPart": self.without_part,
                "schemas": self.schemas, "schemaOf": {str(k): v for k, v in self.schema_of.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "ShardResult":
        return cls(index=d["shard"], counts=Counts.from_dict(d), threshold_reason=d.get("thresholdExceeded"),
                   failed_ids=list(d.get("failedMiniBatches", [])), without_part=list(d.get("withoutPart", [])),
                   schemas=list(d.get("schemas", [])),
                   schema_of={int(k): v for k, v in d.get("schemaOf", {}).items()})


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
    def from_dict(cls, d: dict) -> "ClaimRecord":
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
    def from_dict(cls, d: dict) -> "Heartbeat":
        return cls(d["index"], d["token"], d["at"], d.get("idle", False))
