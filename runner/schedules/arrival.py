"""Data arrival: the files new since the watermark and settled, and the manifest that hands them over.

A file is new when its modification time is after the watermark's, or equal to it
and its name is not among those already handed over at that time; it is settled once
unchanged for settleSeconds. The watermark moves to the newest file handed over, and
only after the run that takes them exists (the caller's order). A file arriving while
a poll lists is younger than the poll's start, so it is not settled yet: the next
poll takes it. A file rewritten in place has a new time: it is new again.

A data run that fails gives its files back: its manifest's files join the watermark's
`again` (each failed run once: `returned` names them) and are offered, with any new
files, to the next data run, at the next poll. So a file is offered until a run that
took it succeeds; it is never in two runs at once, as it is given back only once its
run has failed.

Listing is paged on Azure (only new files are kept, not the whole listing) and
blocking: the operator calls `new_files` from a thread.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from ..storage import filesystem, write_atomic

UTC = timezone.utc
PAGE_SIZE = 5000  # blobs a listing page holds (Azure's most)


@dataclass(frozen=True)
class Arrived:
    name: str  # relative to the watched folder
    uri: str
    modified: datetime  # aware UTC


@dataclass(frozen=True)
class Watermark:
    time: datetime
    names: tuple[str, ...] = ()  # those with exactly `time`, already handed over
    again: tuple[str, ...] = ()  # URIs given back by failed data runs, for the next run
    returned: tuple[str, ...] = ()  # the failed data runs whose files were given back

    def to_dict(self) -> dict:
        """Every field, empty ones too: a status merge patch of it replaces each."""
        return {"time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"), "names": list(self.names),
                "again": list(self.again), "returned": list(self.returned)}

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Watermark | None:
        if not d or not d.get("time"):
            return None
        return cls(datetime.fromisoformat(d["time"].replace("Z", "+00:00")), tuple(d.get("names") or ()),
                   tuple(d.get("again") or ()), tuple(d.get("returned") or ()))

    def text(self) -> str:
        """The watermark as a data run's name hashes it (empty fields left out: names made before they existed stay)."""
        return json.dumps({k: v for k, v in self.to_dict().items() if v or k == "names"}, sort_keys=True)

    def passed(self, f: Arrived) -> bool:
        """Whether `f` was handed over already (or is older than the watermark)."""
        return f.modified < self.time or (f.modified == self.time and f.name in self.names)


def select(files: Iterable[Arrived], watermark: Watermark, now: datetime,
           settle_seconds: int) -> tuple[list[str], Watermark]:
    """The URIs the next data run takes, in order: those given back and the new files settled by
    `now`; and the watermark once they are handed over."""
    settled_before = now - timedelta(seconds=settle_seconds)
    chosen = [f for f in files if not watermark.passed(f) and f.modified <= settled_before]
    if not chosen and not watermark.again:
        return [], watermark
    uris = sorted(set(watermark.again) | {f.uri for f in chosen})
    if not chosen:
        return uris, replace(watermark, again=())
    newest = max(f.modified for f in chosen)
    names = {f.name for f in chosen if f.modified == newest}
    if newest == watermark.time:
        names |= set(watermark.names)
    return uris, Watermark(newest, tuple(sorted(names)), (), watermark.returned)


def give_back(watermark: Watermark, run: str, uris: Iterable[str]) -> Watermark:
    """The watermark once failed data run `run` gave its files back (a second time changes nothing)."""
    if run in watermark.returned:
        return watermark
    return replace(watermark, again=tuple(sorted(set(watermark.again) | set(uris))),
                   returned=(*watermark.returned, run))


def forget(watermark: Watermark, runs: Iterable[str]) -> Watermark:
    """The watermark remembering given back only the runs of `runs` (those that still exist)."""
    kept = set(runs)
    return replace(watermark, returned=tuple(r for r in watermark.returned if r in kept))


def new_files(uri: str, pattern: str, watermark: Watermark, env: Mapping[str, str] | None = None) -> list[Arrived]:
    """The files under `uri` matching `pattern` not handed over yet (blocking; paged on Azure)."""
    fs, root = filesystem(uri, env)
    base = uri.rstrip("/")
    found = []
    for name, modified in _listing(fs, root):
        if not any(part.startswith(("_", ".")) for part in name.split("/")) and \
                (fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(posixpath.basename(name), pattern)):
            f = Arrived(name, f"{base}/{name}", modified)
            if not watermark.passed(f):
                found.append(f)
    return found


def _listing(fs, root: str) -> Iterator[tuple[str, datetime]]:
    if type(fs).__name__ == "AzureBlobFileSystem":
        yield from _azure_listing(fs, root)
        return
    prefix = root.rstrip("/") + "/"
    for path, info in fs.find(root, detail=True).items():
        if info.get("type") != "directory":
            yield path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path), _modified(info)


def _modified(info: dict) -> datetime:
    value = info.get("mtime") or info.get("last_modified") or info.get("LastModified") or info.get("created")
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if value is None:  # what float(None) raised, said plainly
        raise TypeError(f"{info.get('name')}: the storage gives no modification time")
    return datetime.fromtimestamp(float(value), UTC)


def _azure_listing(fs, root: str) -> Iterator[tuple[str, datetime]]:
    """Blob names and times, a page at a time (PAGE_SIZE blobs), from adlfs' own event loop."""
    from fsspec.asyn import sync

    container, prefix, _ = fs.split_path(root.rstrip("/") + "/")
    client = fs.service_client.get_container_client(container)
    pages = client.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                              results_per_page=PAGE_SIZE).by_page()

    async def next_page() -> list[tuple[str, datetime]] | None:
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            return None
        return [(b.name[len(prefix):], b.last_modified.astimezone(UTC)) async for b in page
                if (b.metadata or {}).get("hdi_isfolder") != "true"]

    try:
        while (page := sync(fs.loop, next_page)) is not None:
            yield from page
    finally:
        sync(fs.loop, client.close)


def manifest_uri(workdir: str, schedule: str, run: str) -> str:
    """Where a data-arrival run's manifest lies: `<workdir>/_parallelrun/triggers/<schedule>/<run>.txt`."""
    return f"{workdir.rstrip('/')}/_parallelrun/triggers/{schedule}/{run}.txt"


def write_manifest(uri: str, files: list[str], env: Mapping[str, str] | None = None) -> None:
    """The files' URIs, one a line, written whole (a restart rewrites it with the same or more files)."""
    fs, path = filesystem(uri, env)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    write_atomic(fs, path, "".join(f"{f}\n" for f in files).encode())


def read_manifest(uri: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The URIs a data run's manifest lists (none when it was never written)."""
    fs, path = filesystem(uri, env)
    try:
        return fs.cat_file(path).decode().split()
    except FileNotFoundError:
        return []


