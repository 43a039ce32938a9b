"""What a plan is: its mini-batches (listed files as columns, FileBatches made from them), shards and
chunks, and its errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..contract import PermanentError
from ..records import ShardRange
from ..spec import InputFormat, InputType

PLAN_VERSION = 1
_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options makes a new encoder per call


class PlanError(PermanentError, ValueError):
    """The input cannot be planned (nothing matches, unreadable file...): a user's mistake."""


class InputChanged(PlanError):
    """A resumed run's input, model or side inputs are not what the run was planned with."""


class InputFile(NamedTuple):
    """A listed input file: path relative to the input root, size, and version (mtime in
    ns for a local file, the ETag or modification time of a stored object; None if unknown)."""

    rel: str
    size: int
    version: int | str | None


@dataclass(frozen=True, slots=True)
class MiniBatch:
    """One unit of work. Paths are relative to the plan's input root.

    files: `files` (a list of paths); tabular: `file` with `rows` [start, stop) for
    parquet or `bytes` [start, stop) for csv/jsonl; a partition: `files` with `key`
    (column → value). `items` is None where only reading tells (csv/jsonl by size).
    `stamps` has, for each of `paths`, the file's size and version when it was planned
    (version: mtime in ns, or the store's ETag), flat: (size0, version0, size1, ...),
    so a reader sees a file that changed (`file_stamps` pairs them up). `first_row`: tabular, the
    number of rows of the mini-batches before it in plan order, where all of them are known.
    """

    id: int
    size: int
    items: int | None
    files: tuple[str, ...] | None = None
    file: str | None = None
    rows: tuple[int, int] | None = None
    bytes: tuple[int, int] | None = None
    key: dict | None = None
    stamps: tuple[int | str | None, ...] | None = None
    first_row: int | None = None

    def to_json(self) -> str:
        # Field by field: dataclasses.asdict deep-copies, 3x slower over a million mini-batches.
        return _JSON.encode({name: value for name in self.__slots__ if (value := getattr(self, name)) is not None})

    @classmethod
    def from_json(cls, line: str) -> MiniBatch:
        return cls._from_dict(json.loads(line))

    @classmethod
    def many_from_json(cls, lines: list[str]) -> list[MiniBatch]:
        """Lines of a plan, parsed at once as one JSON array (half the time of a parse each)."""
        return [cls._from_dict(d) for d in json.loads(f"[{','.join(lines)}]")]

    @classmethod
    def _from_dict(cls, d: dict) -> MiniBatch:
        # Positional, each field looked up: cls(**d) took twice as long, a cost a plan of
        # a million mini-batches pays in every shard and worker.
        get = d.get
        files, rows, bytes_, stamps = get("files"), get("rows"), get("bytes"), get("stamps")
        return cls(d["id"], d["size"], get("items"), None if files is None else tuple(files), get("file"),
                   None if rows is None else tuple(rows), None if bytes_ is None else tuple(bytes_), get("key"),
                   None if stamps is None else tuple(stamps), get("first_row"))

    @property
    def paths(self) -> tuple[str, ...]:
        if self.files is not None:
            return self.files
        assert self.file is not None  # a mini-batch has files, or a file (tabular)
        return (self.file,)

    def file_stamps(self) -> list[tuple | None]:
        """(size, version) of each of `paths` when planned; None each where the plan has none."""
        if self.stamps is None:
            return [None] * len(self.paths)
        return list(zip(self.stamps[0::2], self.stamps[1::2]))


@dataclass
class Plan:
    """The plan header; `mini_batches` is filled when planned here, not when read back."""

    input_uri: str  # the root the mini-batches' paths are relative to
    input_type: InputType
    input_format: InputFormat | None
    options: dict
    shards: list[ShardRange]
    total_mini_batches: int
    total_items: int | None
    total_bytes: int
    mini_batches: Sequence[MiniBatch] | None = None  # a list, or FileBatches
    sources: dict | None = None  # {"model": version, "sideInputs": {name: version}} when planned
    schema: dict | None = None  # the columns every table is read with (schemas.to_header; None: as each file has them)
    # Mini-batches per chunk, the unit pods claim (claims.py); None: chunk_size()'s; 0: a plan made
    # before chunks, whose shards are one chunk each
    chunk_mini_batches: int | None = None

    def __post_init__(self):
        if self.chunk_mini_batches is None:
            self.chunk_mini_batches = chunk_size(self.total_mini_batches, len(self.shards))

    def header(self) -> dict:
        inp = {"uri": self.input_uri, "type": self.input_type, "format": self.input_format, "options": self.options}
        if self.schema is not None:
            inp["schema"] = self.schema
        return {"version": PLAN_VERSION, "input": inp,
                "totals": {"miniBatches": self.total_mini_batches, "items": self.total_items,
                           "bytes": self.total_bytes},
                "shards": [s.to_dict() for s in self.shards], "chunkMiniBatches": self.chunk_mini_batches,
                "sources": self.sources}

    @classmethod
    def from_header(cls, d: dict) -> Plan:
        return cls(input_uri=d["input"]["uri"], input_type=d["input"]["type"],
                   input_format=d["input"]["format"], options=d["input"]["options"],
                   shards=[ShardRange.from_dict(s) for s in d["shards"]],
                   total_mini_batches=d["totals"]["miniBatches"], total_items=d["totals"]["items"],
                   total_bytes=d["totals"]["bytes"], sources=d.get("sources"), schema=d["input"].get("schema"),
                   chunk_mini_batches=d.get("chunkMiniBatches", 0))

    def absolute(self, relative: str) -> str:
        """The URI of a mini-batch path."""
        return f"{self.input_uri.rstrip('/')}/{relative}" if relative else self.input_uri


@dataclass
class Listing:
    """Listed input files as three columns, in plan order: a million InputFile tuples
    would cost several times the time and memory."""

    rels: list[str]
    sizes: list[int]
    versions: list[int | str | None]

    @classmethod
    def of(cls, files: list[InputFile]) -> Listing:
        return cls([f.rel for f in files], [f.size for f in files], [f.version for f in files])

    def __len__(self) -> int:
        return len(self.rels)

    def files(self) -> list[InputFile]:
        return list(map(InputFile, self.rels, self.sizes, self.versions))


class FileBatches(Sequence):
    """The mini-batches of a files input: `count` listed files each, in listing order.

    Made on demand from the listing's columns, and written to the plan as JSON lines
    straight from them: a million MiniBatch objects would double planning's time."""

    def __init__(self, listing: Listing, count: int):
        self.listing, self.per_batch = listing, count
        sizes = listing.sizes
        self.sizes = sizes if count == 1 else [sum(sizes[a:a + count]) for a in range(0, len(sizes), count)]

    def items_between(self, start: int, stop: int) -> int:
        """The files of mini-batches start..stop-1."""
        return min(stop * self.per_batch, len(self.listing)) - min(start * self.per_batch, len(self.listing))

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1 or self.per_batch != 1:
                return [self[i] for i in range(start, stop, step)]
            rels, sizes, versions = self.listing.rels, self.listing.sizes, self.listing.versions
            return [MiniBatch(i, size, 1, (rel,), None, None, None, None, (size, version))  # in one pass
                    for i, rel, size, version in zip(range(start, stop), rels[start:stop], sizes[start:stop],
                                                      versions[start:stop])]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        a, b = index * self.per_batch, min((index + 1) * self.per_batch, len(self.listing))
        return MiniBatch(index, int(self.sizes[index]), b - a, tuple(self.listing.rels[a:b]), None, None, None, None,
                         tuple(self._stamps(a, b)))

    def _stamps(self, a: int, b: int) -> list:
        """Files a..b-1's (size, version) pairs, flat."""
        stamps: list[int | str | None] = [0, 0] * (b - a)
        stamps[0::2], stamps[1::2] = self.listing.sizes[a:b], self.listing.versions[a:b]
        return stamps

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(x == y for x, y in zip(self, other))

    def json_lines(self, start: int, stop: int) -> list[str]:
        """Mini-batches start..stop-1 as the plan's JSON lines (MiniBatch.to_json's), made from the columns."""
        encode = _JSON.encode
        rels, sizes, versions = self.listing.rels, self.listing.sizes, self.listing.versions
        if self.per_batch == 1:
            return [f'{{"id":{i},"size":{sizes[i]},"items":1,"files":[{encode(rels[i])}],"stamps":[{sizes[i]},'
                    f'{v if type(v) is int else encode(v)}]}}' for i, v in zip(range(start, stop),
                                                                               versions[start:stop])]
        lines = []
        for i in range(start, stop):
            a, b = i * self.per_batch, min((i + 1) * self.per_batch, len(rels))
            lines.append(f'{{"id":{i},"size":{self.sizes[i]},"items":{b - a},"files":{encode(rels[a:b])},'
                         f'"stamps":{encode(self._stamps(a, b))}}}')
        return lines


CHUNKS_PER_SHARD = 16  # the last chunk of a job is about this fraction of a pod's work
MAX_CHUNK_MINI_BATCHES = 1000  # a claim per commit group at most: claims stay a small share of requests


def chunk_size(total_mini_batches: int, shard_count: int) -> int:
    """Mini-batches per chunk: many chunks per shard, so that pods that finish early take over
    the tails of the others, and never so small that claiming costs more than committing."""
    per_shard = -(-total_mini_batches // max(shard_count, 1))
    return max(1, min(-(-per_shard // CHUNKS_PER_SHARD), MAX_CHUNK_MINI_BATCHES))
