"""Work distribution without a queue server: pods claim chunks of the plan in the run's storage.

The plan cuts each shard's range into chunks (Plan.chunk_mini_batches). Before it scores
a chunk, a pod creates `claims/<chunk>` only if absent: whoever creates it holds the
chunk, and only its holder commits the chunk's mini-batches. Pod `i` claims its own
range from the front; once it meets a claimed chunk (a stealer took the tail), it
steals: it lists the claims and creates the last unclaimed chunk of the range with the
most unclaimed mini-batches, so an owner and its stealers meet in the middle.

Every write here is a create-if-absent, the one conditional write every store has: a
local disk by a link of a whole temporary file (fails when the name exists), Azure Blob
by a PUT with `If-None-Match: *` (adlfs' mode="create"), S3 by `If-None-Match: *` on
PutObject, GCS by `ifGenerationMatch=0`. A takeover of a claim is one too: the taker
creates `claims/<chunk>.takeover-<holder's token>` with its own record, so of two takers
of the same holder one alone wins, in one request; the holder of a chunk is the last of
that chain. A claim is taken over
when its holder is gone (its heartbeat, `claims/alive-<index>`, stopped for
STALE_SECONDS without saying it was idle) or by a retry of the same index, which
resumes its own claims first. A pod with nothing left to claim waits, idle, while
another still works on its chunks (Claims.wait), so that whichever pod is lost (a
scale-down, an index that failed for good) its chunks are taken over.

A claim costs one create on a pod's own range, a listing and a create when stolen:
at most two requests per chunk. Commit records stay the truth: the merge takes each
mini-batch's first record in a sorted listing, so even a holder that went on after
losing its claim cannot double a mini-batch.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from .layout import Layout
from .planning import Plan
from .records import ClaimRecord, Heartbeat
from .storage import create_if_absent, is_local, write_atomic

log = logging.getLogger("parallelrun")

STALE_SECONDS = float(os.environ.get("PARALLELRUN_CLAIM_STALE_SECONDS", "60"))  # a silent holder is gone
HEARTBEAT_SECONDS = STALE_SECONDS / 6
TAKEOVER = ".takeover-"
HEARTBEAT_PREFIX = "alive-"


class ClaimLost(RuntimeError):
    """This pod's claim was taken over while it could not write its heartbeat: it stops (the
    index is retried and resumes what it still holds)."""


class Chunk(NamedTuple):
    """Mini-batches first .. stop - 1 of the plan, in shard `shard`'s range."""

    first: int
    stop: int
    shard: int


def chunks(plan: Plan) -> list[Chunk]:
    """Every chunk of the plan, in plan order."""
    size = plan.chunk_mini_batches or max((s.count for s in plan.shards), default=1) or 1
    return [Chunk(a, min(a + size, s.first + s.count), s.index)
            for s in plan.shards for a in range(s.first, s.first + s.count, size)]


class Claims:
    """Pod index `index`'s claims on one run: which chunk it scores next, and its heartbeat."""

    def __init__(self, fs, layout: Layout, plan: Plan, index: int, pod: str | None = None):
        self.fs, self.layout, self.index = fs, layout, index
        self.chunks = chunks(plan)
        self._by_first = {c.first: c for c in self.chunks}
        self.token = uuid.uuid4().hex
        self.pod = pod or os.environ.get("HOSTNAME") or socket.gethostname()
        self._own = [c for c in self.chunks if c.shard == index]
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None
        self._last_beat = time.monotonic()
        self._held: set[int] = set()  # chunks this attempt claimed
        self._idle = False  # every chunk held is committed, none left to claim
        self.stolen = 0  # chunks of other ranges this pod claimed or took over

    # -- the pod's life --------------------------------------------------------------

    def start(self) -> list[Chunk]:
        """Say this pod is alive; returns the chunks an earlier attempt of this index held, now
        this attempt's (their committed mini-batches are skipped by the caller)."""
        earlier = self._read(self.layout.heartbeat(self.index))
        self._beat()
        self._beating = threading.Thread(target=self._beat_on, daemon=True, name=f"parallelrun-heartbeat-{self.index}")
        self._beating.start()
        if earlier is None:
            return []
        mine = [c for c in self.holders().values() if c.index == self.index and c.token != self.token]
        resumed = [self._by_first[c.chunk] for c in sorted(mine, key=lambda c: c.chunk) if self._take_over(c)]
        if resumed:
            log.info("pod index %d: resuming %d chunk(s) its earlier attempt claimed", self.index, len(resumed))
        return resumed

    def finish(self, done: bool, untouched: Callable[[Chunk], bool] = lambda chunk: False) -> None:
        """Stop the heartbeat; `done`: nothing is left to claim and every chunk held is committed.

        A pod that stops before (preempted, SIGTERM) gives back the chunks it holds of which
        nothing is committed (`untouched`): the others claim them at once instead of waiting
        for its heartbeat to go stale. A chunk partly committed waits for this index's retry,
        or a takeover."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        if done:
            self._idle = True
            self._beat()
            return
        if time.monotonic() - self._last_beat >= STALE_SECONDS / 2:
            return  # perhaps taken over already: a claim is deleted only by its holder
        for first in sorted(self._held):
            if untouched(self._by_first[first]):
                try:
                    self.fs.rm_file(self.layout.claim(first))
                except Exception as e:  # noqa: BLE001 - kept, it goes to the retry or a taker
                    log.warning("pod index %d cannot give back chunk %d: %s", self.index, first, e)

    def wait(self, should_stop: Callable[[], bool]) -> bool:
        """Idle (every chunk this pod holds is committed, none is left to claim): wait while
        another pod still works on its chunks. True as soon as one of them falls silent (its
        chunks can be taken over: claim again), False once none is left working."""
        self._idle = True
        self._beat()
        while not should_stop():
            if len(self._claimed()) < len(self.chunks):  # given back by a pod that stopped
                self._idle = False
                return True
            beats = [b for b in self._heartbeats() if b.index != self.index and not b.idle]
            silent = {b.index for b in beats if time.time() - b.at > STALE_SECONDS}
            if silent and any(c.index in silent for c in self.holders().values()):
                self._idle = False
                return True
            if len(silent) == len(beats):  # nobody is left working
                return False
            if self._stop.wait(HEARTBEAT_SECONDS):
                break
        return False

    def next(self) -> tuple[Chunk, bool] | None:
        """The next chunk this pod holds, and whether an earlier holder may have committed some of
        it (a takeover); None when every chunk is claimed by a live holder."""
        while self._own:
            chunk = self._own.pop(0)
            if self._create(chunk):
                return chunk, False
            self._own = []  # stealers take a range from its tail: the rest of it is claimed
        return self._steal()

    def check(self) -> None:
        """Raise ClaimLost if a chunk this pod claimed was taken over. Free while heartbeats are
        written: a holder is only taken over after STALE_SECONDS of silence."""
        if time.monotonic() - self._last_beat < STALE_SECONDS / 2:
            return
        holders = self.holders()
        for chunk in sorted(self._held):
            if chunk not in holders or holders[chunk].token != self.token:
                raise ClaimLost(f"pod index {self.index} lost chunk {chunk} to another pod while its heartbeat "
                                f"could not be written; the retry resumes the chunks it still holds")

    # -- claiming ----------------------------------------------------------------------

    def _record(self, chunk: int) -> bytes:
        return json.dumps(ClaimRecord(chunk, self.index, self.token, self.pod, time.time()).to_dict()).encode()

    def _create(self, chunk: Chunk) -> bool:
        if not create_if_absent(self.fs, self.layout.claim(chunk.first), self._record(chunk.first)):
            return False
        self._held.add(chunk.first)
        self._idle = False
        return True

    def _steal(self) -> tuple[Chunk, bool] | None:
        refused: set[int] = set()  # claimed, whatever a listing that lags the store says
        while True:
            claimed = self._claimed() | refused
            left: dict[int, list[Chunk]] = {}
            for c in self.chunks:
                if c.first not in claimed:
                    left.setdefault(c.shard, []).append(c)
            if not left:
                return self._take_stale()
            most = max(left.values(), key=lambda cs: (sum(c.stop - c.first for c in cs), -cs[0].shard))
            if self._create(most[-1]):
                self.stolen += most[-1].shard != self.index
                return most[-1], False
            refused.add(most[-1].first)

    def _take_stale(self) -> tuple[Chunk, bool] | None:
        """A chunk whose holder is gone, taken over; None when every holder is alive or idle."""
        now = time.time()
        gone = {b.index for b in self._heartbeats()
                if not b.idle and now - b.at > STALE_SECONDS and b.index != self.index}
        if not gone:
            return None
        for claim in sorted(self.holders().values(), key=lambda c: c.chunk):
            if claim.index in gone and self._take_over(claim):
                log.warning("pod index %d took over chunk %d from index %d, silent for over %.0f s",
                            self.index, claim.chunk, claim.index, STALE_SECONDS)
                self.stolen += 1
                return self._by_first[claim.chunk], True
        return None

    def _take_over(self, claim: ClaimRecord) -> bool:
        """Hold `claim`'s chunk instead of its holder, unless another taker won it first."""
        if not create_if_absent(self.fs, self.layout.claim(claim.chunk) + TAKEOVER + claim.token,
                                self._record(claim.chunk)):
            return False
        self._held.add(claim.chunk)
        self._idle = False
        return True

    # -- reading the claims folder ----------------------------------------------------------

    def _names(self) -> list[str]:
        """The claims folder as it is now (not as a filesystem's listing cache remembers it)."""
        if not is_local(self.fs):
            self.fs.invalidate_cache(self.layout.claims_dir)
        try:
            return [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.layout.claims_dir, detail=False)]
        except FileNotFoundError:
            return []

    def _claimed(self) -> set[int]:
        """The chunks claimed, from one listing."""
        return {int(name) for name in self._names() if name.isdigit()}

    def holders(self) -> dict[int, ClaimRecord]:
        """Each claimed chunk's holder: its claim's, or the last taker's in the chain of takeovers
        (`<chunk>.takeover-<token>` holds the record of whoever took over from `token`). Read in
        one batched request where the store has one."""
        names = [name for name in self._names() if name.isdigit() or TAKEOVER in name]
        if not names:
            return {}
        paths = [posixpath.join(self.layout.claims_dir, name) for name in names]
        found = self.fs.cat(paths, on_error="omit") if not is_local(self.fs) else \
            {p: data for p in paths if (data := self._read(p)) is not None}
        holders: dict[int, ClaimRecord] = {}
        taken: dict[tuple[int, str], ClaimRecord] = {}  # (chunk, token taken over) → the taker
        for p, data in found.items():
            record = ClaimRecord.from_dict(json.loads(data))
            name = posixpath.basename(p)
            if TAKEOVER in name:
                taken[record.chunk, name.split(TAKEOVER, 1)[1]] = record
            else:
                holders[record.chunk] = record
        for chunk, record in holders.items():
            while (chunk, record.token) in taken:
                record = taken[chunk, record.token]
            holders[chunk] = record
        return holders

    def _heartbeats(self) -> list[Heartbeat]:
        return [Heartbeat.from_dict(json.loads(data)) for name in self._names() if name.startswith(HEARTBEAT_PREFIX)
                if (data := self._read(posixpath.join(self.layout.claims_dir, name)))]

    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    # -- the heartbeat -------------------------------------------------------------------

    def _beat(self) -> None:
        write_atomic(self.fs, self.layout.heartbeat(self.index),
                     json.dumps(Heartbeat(self.index, self.token, time.time(), self._idle).to_dict()).encode())
        self._last_beat = time.monotonic()

    def _beat_on(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._beat()
            except Exception as e:  # noqa: BLE001 - the next beat tries again; holds() notices a long silence
                log.warning("pod index %d cannot write its heartbeat: %s", self.index, e)
