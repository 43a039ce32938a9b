"""Group commits: how a finished mini-batch becomes permanent, a group at a time.

A worker keeps the parts of the mini-batches it ran in a PartGroup and writes them as
one file (`parts/g-<shard>-<worker>-<token>.<ext>`, the parts back to back), then
tells the shard where each part lies. The shard keeps each mini-batch's DoneRecord
(with its part's file, offset and length) in a CommitLog and writes a group of them
as one file (`commits/<shard>/<token>.jsonl`): that file is the commit. Each file is
published whole (storage.write_atomic: one PUT on an object store, temp + fsync +
rename on a disk), so a crash leaves whole groups or nothing, never a torn record.

A part is written before the record that points at it, so a committed mini-batch
always has its part; a part whose record was never written is garbage, ignored (and
deleted with the parts folder after the merge). A mini-batch's record is written by
the pod that holds its chunk (claims.py), into that pod's own folder, once: the pod
never stages a committed mini-batch again.

Runs scored before group commits left one `done/NNNNNNNNN.json` per mini-batch, its
part at `parts/NNNNNNNNN.<ext>`: read_commits reads those too, so such a run resumes
and merges.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from .layout import Layout
from .records import DoneRecord
from .storage import write_atomic

_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps with options makes an encoder per call

# A group is written once it holds this many mini-batches, bytes or seconds (whichever first).
GROUP_MINI_BATCHES = 1000
GROUP_BYTES = 8 * 2**20
GROUP_SECONDS = 1.0


class _Group:
    """What a group's size limits have in common: count, bytes, age."""

    def __init__(self, max_items: int, max_bytes: int, max_seconds: float):
        self.max_items, self.max_bytes, self.max_seconds = max_items, max_bytes, max_seconds
        self.count = 0
        self.bytes = 0
        self.started = 0.0

    def _added(self, size: int) -> None:
        if not self.count:
            self.started = time.monotonic()
        self.count += 1
        self.bytes += size

    def deadline(self) -> float | None:
        """When the group is due by age (time.monotonic()); None when empty."""
        return self.started + self.max_seconds if self.count else None

    def due(self) -> bool:
        return bool(self.count) and (self.count >= self.max_items or self.bytes >= self.max_bytes
                                     or time.monotonic() >= self.started + self.max_seconds)


class PartGroup(_Group):
    """A worker's parts not yet written: one file per group."""

    def __init__(self, fs, layout: Layout, owner: str, max_parts: int = GROUP_MINI_BATCHES,
                 max_bytes: int = GROUP_BYTES, max_seconds: float = GROUP_SECONDS):
        super().__init__(max_parts, max_bytes, max_seconds)
        self.fs, self.layout, self.owner = fs, layout, owner
        self._chunks: list[bytes] = []
        self._entries: list[tuple[int, int, int]] = []

    def add(self, mini_batch_id: int, data: bytes) -> None:
        self._entries.append((mini_batch_id, self.bytes, len(data)))
        self._chunks.append(data)
        self._added(len(data))

    def take(self) -> GroupFile:
        """The parts held, as the file to publish (GroupFile.write); the group is empty afterwards."""
        name = f"g-{self.owner}-{uuid.uuid4().hex[:12]}.{self.layout.part_ext}"
        group = GroupFile(self.fs, posixpath.join(self.layout.parts_dir, name), self._chunks, self._entries)
        self._chunks, self._entries, self.count, self.bytes = [], [], 0, 0
        return group


class GroupFile(NamedTuple):
    """A group of parts taken from a PartGroup, to be published as one file."""

    fs: object
    path: str
    chunks: list[bytes]
    entries: list[tuple[int, int, int]]  # (mini-batch, offset, length) of each part

    def write(self) -> tuple[str, list[tuple[int, int, int]]]:
        """Publish the file (whole or not at all, durably); returns its name (in the parts
        folder) and the entries."""
        write_atomic(self.fs, self.path, self.chunks, durable=True)
        return posixpath.basename(self.path), self.entries


class CommitLog(_Group):
    """A shard's staged commits, written as one file per group."""

    def __init__(self, fs, layout: Layout, shard: int, max_records: int = GROUP_MINI_BATCHES,
                 max_seconds: float = GROUP_SECONDS):
        super().__init__(max_records, 2**62, max_seconds)
        self.fs, self.layout, self.shard = fs, layout, shard
        self._lines: list[str] = []
        self._records: list[DoneRecord] = []

    def stage(self, record: DoneRecord) -> None:
        self._lines.append(record_line(record))
        self._records.append(record)
        self._added(0)

    def write(self) -> list[DoneRecord]:
        """Commit the staged records (nothing when none); returns them."""
        if not self._records:
            return []
        path = posixpath.join(self.layout.commits_dir(self.shard), f"{uuid.uuid4().hex}.jsonl")
        write_atomic(self.fs, path, ("\n".join(self._lines) + "\n").encode(), durable=True)
        records = self._records
        self._lines, self._records, self.count = [], [], 0
        return records


_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")  # a part file's name as JSON needs no escaping


def record_line(record: DoneRecord) -> str:
    """A record's line of a commit file: its to_dict() as JSON. One without errors or schema
    (most of them: its fields are numbers and plain names) is formatted here, in a third of
    the encoder's time."""
    part = record.part
    if record.errors or record.schema is not None or (part is not None and not _PLAIN_NAME.fullmatch(part[0])):
        return _JSON.encode(record.to_dict())
    part_json = "null" if part is None else f'["{part[0]}",{part[1]},{part[2]}]'
    report_json = "null" if record.report is None else _JSON.encode(record.report)
    return (f'{{"id":{record.id},"status":"{record.status}","items":{record.items},"attempts":{record.attempts},'
            f'"errors":[],"schema":null,"succeeded":{record.succeeded},"failed":{record.failed},"part":{part_json},'
            f'"report":{report_json}}}')


def commit_files(fs, layout: Layout) -> dict[str, list[DoneRecord]]:
    """Every commit file of the run, in a sorted listing, with its records: one a line of
    commit_lines(), in order. One parse for a file: merges read thousands."""
    paths = sorted(path for folder in _listing(fs, layout.all_commits_dir) for path in _listing(fs, folder))
    return {path: [DoneRecord.from_dict(d) for d in json.loads(f"[{','.join(commit_lines(fs, path))}]")]
            for path in paths
            if path.endswith(".jsonl") and not posixpath.basename(path).startswith(".")}  # else a write cut short


def read_commits(fs, layout: Layout, ids: Iterable[int],
                 files: dict[str, list[DoneRecord]] | None = None) -> dict[int, DoneRecord]:
    """The committed records of mini-batches `ids`, whichever pod committed them: every commit
    file (`files`: the run's commit_files(), where the caller has read them), and the `done/`
    records of a run scored before group commits. A mini-batch committed twice (a holder that
    went on after its claim was taken over) counts once: its record in the first file of a
    sorted listing."""
    wanted = set(ids)
    records: dict[int, DoneRecord] = {}
    for in_file in (commit_files(fs, layout) if files is None else files).values():
        for record in in_file:
            records.setdefault(record.id, record)
    for path in _listing(fs, layout.done_dir):
        name = posixpath.basename(path)
        if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) in wanted \
                and int(name[:-5]) not in records:
            record = DoneRecord.from_dict(json.loads(fs.cat_file(path)))
            records[record.id] = record
    return {k: v for k, v in records.items() if k in wanted}


def commit_lines(fs, path: str) -> list[str]:
    """The records' lines of a commit file."""
    return [line for line in fs.cat_file(path).decode().splitlines() if line.strip()]


def _listing(fs, folder: str) -> list[str]:
    try:
        return fs.ls(folder, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []


class Parts:
    """The merge's view of committed parts: mini-batch → its bytes, whatever the layout.

    Group files are read whole, once, and kept while their parts are read (the few most
    recent, up to CACHE_BYTES); a part of a larger file is read by its range."""

    CACHE_BYTES = 256 * 2**20

    def __init__(self, fs, layout: Layout, records: dict[int, DoneRecord]):
        self.fs, self.layout, self.records = fs, layout, records
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        self._extent: dict[str, int] = {}  # a group file's committed bytes: its size, without asking
        for record in records.values():
            if record.part is not None:
                name, offset, length = record.part
                self._extent[name] = max(self._extent.get(name, 0), offset + length)
        parts_dir = layout.parts_dir
        self._paths = {name: posixpath.join(parts_dir, name) for name in self._extent}  # a group file's path

    def path(self, mini_batch_id: int) -> str:
        record = self.records.get(mini_batch_id)
        if record is None or record.part is None:  # a run scored before group commits
            return self.layout.part(mini_batch_id)
        return self._paths[record.part[0]]

    def open(self, mini_batch_id: int):
        """The part as a binary file; FileNotFoundError when it is not there."""
        record = self.records.get(mini_batch_id)
        if record is None or record.part is None:
            return self.fs.open(self.path(mini_batch_id), "rb")
        name, offset, length = record.part
        path = self._paths[name]
        data = self._whole(path, self._extent[name])
        if data is None:
            data = self.fs.cat_file(path, offset, offset + length)
            offset = 0
        if len(data) < offset + length:
            raise FileNotFoundError(f"{path} is shorter than its committed parts")
        return io.BytesIO(memoryview(data)[offset:offset + length])

    def _whole(self, path: str, size: int) -> bytes | None:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        if size > self.CACHE_BYTES // 4:
            return None
        data = self.fs.cat_file(path)
        self._cache[path] = data
        self._cached += len(data)
        while self._cached > self.CACHE_BYTES:
            self._cached -= len(self._cache.popitem(last=False)[1])
        return data

