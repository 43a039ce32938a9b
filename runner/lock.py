"""One `parallelrun run` of a run id at a time.

Two runs of one job on one output would score every mini-batch twice, and a third,
started as the first ends, would wipe the work folder under the second. The lock
sits beside the run's work folder (`_parallelrun/<run-id>.lock`), so starting over
with --fresh does not delete it.

On a local disk it is an flock(2): the kernel releases it when the holder dies, however
it dies. On object storage it is a lease: a blob created only if absent (one PUT with
If-None-Match), refreshed by the holder every LEASE_SECONDS / 3 and taken over once it
is older than LEASE_SECONDS (its holder is gone). Each holder has a token: it refreshes
and deletes the lease only while the lease is still its own, and says so loudly when
it finds it taken over. A takeover is a create-if-absent of a marker named after the
stale lease's token (claims.py's takeover): of two takers of one stale lease, one wins.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
import uuid
from typing import TextIO

from .claims import TAKEOVER
from .contract import PermanentError
from .records import LockHolder
from .storage import create_if_absent, is_local, join

LEASE_SECONDS = 60.0

log = logging.getLogger("parallelrun")


class RunLocked(PermanentError, RuntimeError):
    """Another process runs this run id; the message names it."""


def _holder() -> LockHolder:
    return LockHolder(os.getpid(), socket.gethostname(), uuid.uuid4().hex,
                      datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), time.time())


def _locked_message(run_id: str, holder: LockHolder) -> str:
    return (f"run {run_id} is already running (pid {holder.pid} on {holder.host}, since "
            f"{holder.since}); wait for it to finish or stop it, then run again")


def _alive(holder: LockHolder) -> bool:
    """Whether a lease's holder refreshed it within LEASE_SECONDS."""
    return time.time() - (holder.heartbeat or 0) < LEASE_SECONDS


PROBE_WAITS = (0.01, 0.02, 0.05)  # held_by's shared lock lasts microseconds: a run starting then waits it out


def _flock_soon(f, operation: int) -> None:
    """flock(2) without blocking, tried again after each of PROBE_WAITS; BlockingIOError if still held."""
    import fcntl

    for wait in (*PROBE_WAITS, None):
        try:
            fcntl.flock(f, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if wait is None:
                raise
            time.sleep(wait)


def lock_path(output_path: str, run_id: str) -> str:
    return join(output_path, "_parallelrun", f"{run_id}.lock")


def held_by(fs, output_path: str, run_id: str) -> LockHolder | None:
    """The holder of run `run_id`'s lock while a process holds it, else None."""
    path = lock_path(output_path, run_id)
    if not is_local(fs):
        try:
            holder = LockHolder.from_text(fs.cat_file(path))
        except (FileNotFoundError, ValueError):
            return None
        return holder if _alive(holder) else None
    import fcntl

    try:
        f = open(path)  # noqa: SIM115 - closed below, whichever way the probe goes
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return LockHolder.from_text(f.read())
            except ValueError:
                return LockHolder()
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


class RunLock:
    def __init__(self, fs, output_path: str, run_id: str):
        self.fs, self.run_id = fs, run_id
        self.path = lock_path(output_path, run_id)
        self._file: TextIO | None = None
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._holder = _holder()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if is_local(self.fs):
            self._acquire_local()
        else:
            self._acquire_lease()

    def _acquire_local(self) -> None:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open as the lock until release()
        try:
            _flock_soon(f, fcntl.LOCK_EX)
        except BlockingIOError:
            f.seek(0)
            try:
                holder = LockHolder.from_text(f.read())
            except ValueError:
                holder = LockHolder()
            f.close()
            raise RunLocked(_locked_message(self.run_id, holder)) from None
        f.seek(0)
        f.truncate()
        f.write(self._holder.to_text())
        f.flush()
        self._file = f

    def _acquire_lease(self) -> None:
        try:
            self.fs.pipe_file(self.path, self._holder.to_text().encode(), mode="create")
        except FileExistsError:
            holder = self._read_lease()
            if holder is not None and _alive(holder):
                raise RunLocked(_locked_message(self.run_id, holder)) from None
            # Its holder stopped refreshing it: gone. Of the takers of this lease, the one that
            # creates its takeover marker wins; the others meet the marker.
            mine = self._holder.to_text().encode()
            won = create_if_absent(self.fs, f"{self.path}{TAKEOVER}{holder.token}", mine) \
                if holder is not None else create_if_absent(self.fs, self.path, mine)
            if not won:
                raise RunLocked(_locked_message(self.run_id, self._read_lease() or LockHolder())) from None
            if holder is not None:
                self.fs.pipe_file(self.path, mine)
        self._refresher = threading.Thread(target=self._refresh, daemon=True, name="parallelrun-lease")
        self._refresher.start()

    def _read_lease(self) -> LockHolder | None:
        try:
            return LockHolder.from_text(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return None

    def _ours(self) -> bool:
        lease = self._read_lease()
        return lease is not None and lease.token == self._holder.token

    def _refresh(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                if not self._ours():
                    log.error("the lease %s of run %s was taken over by another process: this run is no longer "
                              "the only one on its work folder", self.path, self.run_id)
                    return
                self._holder.heartbeat = time.time()
                self.fs.pipe_file(self.path, self._holder.to_text().encode())
            except Exception as e:  # noqa: BLE001 - the next refresh tries again; the lease outlives a few misses
                log.warning("cannot refresh the lease %s: %s", self.path, e)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the flock; the file stays (removing it would race a waiter)
            self._file = None
        if self._refresher is not None:
            self._stop.set()
            self._refresher.join()
            self._refresher = None
            try:
                if self._ours():
                    self.fs.rm(self.path)
            except Exception as e:  # noqa: BLE001 - an unreleased lease expires by itself
                log.warning("cannot release the lease %s: %s", self.path, e)
