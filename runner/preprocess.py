"""`preprocess(item)` of an entry script: CPU work done beside run(), so a GPU worker only computes.

An item is one input file for files input (its local path: preprocess(path) runs once per
file, and run() receives the list of their results, in item order), and the mini-batch's
DataFrame for tabular input (one call per mini-batch; run() receives its result): rows are
transformed a DataFrame at a time, not one Python call each.

A file whose preprocess() raises is a failed item, listed with its error; run() receives
the results of the others (none left: run() is not called). For tabular input the item is
the mini-batch: an exception fails the attempt, as one raised by run() does.

With `preprocessProcesses` P > 0, a pod's P processes are shared out among its workers
(worker k has P // W, one more for the first P % W; one with none preprocesses in its own
process). A worker forks its preprocess processes after importing the entry script and
before init(): they have the script's module-level state, not what init() makes (a model
on the GPU). While run() computes, they work on the items of the next mini-batches: at
most `ahead` mini-batches past the running one have items handed out or results held,
so memory stays bounded. Items go to whichever process has room (two files queued at most
each), so a slow item holds up no other process. A preprocess process that dies ends its
worker (exit code PREPROCESS_LOST): the mini-batch it was preparing has a failed attempt,
the others are returned to run again, and the replacement worker starts new processes
(and init() again), as after any worker crash. A preprocess() that hangs is ended by
runInvocationTimeout, which counts the wait for the mini-batch's results.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any, NamedTuple

from .processes import join_pool, reseed

log = logging.getLogger("parallelrun")

PREPROCESS_LOST = 86  # a worker's exit code when one of its preprocess processes died
# Items handed to one preprocess process at a time: one in hand, one waiting (a file's path).
# A tabular mini-batch is handed only to an idle process, which is reading: a DataFrame sent to a busy
# one could fill the pipe while the results thread, sending it, stops reading that process's result.
QUEUED = {True: 2, False: 1}

Describe = Callable[[BaseException, str], str]  # an exception as an error line (worker._failure)


class ItemFailed(NamedTuple):
    """preprocess() raised for item `item` (its index) of a mini-batch."""

    item: int
    error: str
    traceback: str


class PreprocessError(RuntimeError):
    """preprocess() raised for a tabular mini-batch: the attempt failed."""


class _Traceback(Exception):
    """preprocess()'s traceback, the cause of the PreprocessError raised in the worker."""

    def __str__(self) -> str:
        return self.args[0]


class PreprocessLost(RuntimeError):
    """A preprocess process died: its worker ends (PREPROCESS_LOST) and is replaced."""


def processes_of(total: int, workers: int, k: int) -> int:
    """Worker k's share of a pod's `total` preprocess processes."""
    return total // workers + (k < total % workers)


def items_of(payload: Any, files: bool) -> list:
    """What preprocess() is called with: each file of a files mini-batch, a tabular one whole."""
    return payload if files else [payload]


def start(module, processes: int, conn: Connection, describe: Describe) -> Inline | Pool | None:
    """The worker's preprocessing: None where the script has no preprocess(), else `processes`
    forked now (before init()), or none (it runs in the worker). `conn`: the worker's pipe to
    its shard, closed in the forked processes."""
    fn = getattr(module, "preprocess", None)
    if not callable(fn):
        if processes:
            log.warning("spec.preprocessProcesses is set, but %s has no preprocess(item): no process started",
                        module.__file__)
        return None
    return Pool(fn, processes, conn, describe) if processes > 0 else Inline(fn, describe)


class Inline:
    """preprocess() called in the worker, item by item, before run()."""

    def __init__(self, fn: Callable, describe: Describe):
        self.fn, self.describe = fn, describe

    def submitter(self, files: bool) -> None:
        """None: nothing is handed out ahead; apply() does the work."""

    def apply(self, mb_id: int, payload: Any, files: bool) -> tuple[Any, list[ItemFailed]]:
        """(what run() receives, the items that failed)."""
        results, failed = [], []
        for index, item in enumerate(items_of(payload, files)):
            try:
                results.append(self.fn(item))
            except BaseException as e:  # noqa: BLE001 - the item failed, with its error
                failed.append(ItemFailed(index, self.describe(e, "preprocess()"), traceback.format_exc()))
        return _received(results, failed, files)


def _received(results: list, failed: list[ItemFailed], files: bool) -> tuple[Any, list[ItemFailed]]:
    if files:
        return results, failed
    if failed:
        raise PreprocessError(failed[0].error) from _Traceback(failed[0].traceback)
    return results[0], []


def _serve(conn: Connection, fn: Callable, describe: Describe, parent: int, shard_conn: Connection) -> None:
    """A preprocess process: (key, item) in, (key, True, result) or (key, False, error, traceback) out."""
    join_pool(None, parent)  # dies with its worker
    shard_conn.close()
    reseed()
    while True:
        try:
            key, item = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((key, True, fn(item)))
        except BaseException as e:  # noqa: BLE001 - the item failed (a result that cannot be pickled too)
            conn.send((key, False, describe(e, "preprocess()"), traceback.format_exc()))


class _Process:
    def __init__(self, fn: Callable, describe: Describe, shard_conn: Connection):
        self.conn, theirs = multiprocessing.Pipe()
        context = multiprocessing.get_context("fork")
        self.process = context.Process(target=_serve, args=(theirs, fn, describe, os.getpid(), shard_conn),
                                       name="parallelrun-preprocess", daemon=True)
        self.process.start()
        theirs.close()
        self.queued = 0


class Pool:
    """The worker's preprocess processes. The worker's reading thread submits the items of
    each mini-batch it read; apply() waits for a mini-batch's results."""

    def __init__(self, fn: Callable, processes: int, shard_conn: Connection, describe: Describe):
        self.processes = [_Process(fn, describe, shard_conn) for _ in range(processes)]
        self.tasks: deque[tuple[tuple[int, int], Any]] = deque()  # ((mini-batch, index), item), not handed out
        self.results: dict[int, dict[int, tuple]] = {}  # mini-batch → index → (ok, result or error, traceback)
        self.lost: str | None = None
        self.queued = QUEUED[True]
        self.changed = threading.Condition()
        threading.Thread(target=self._collect, name="parallelrun-preprocess-results", daemon=True).start()

    def submitter(self, files: bool) -> Callable[[int, Any], None]:
        """What the worker calls with each mini-batch it read: its items are handed out."""
        self.queued = QUEUED[files]
        return lambda mb_id, payload: self.submit(mb_id, items_of(payload, files))

    def submit(self, mb_id: int, items: list) -> None:
        with self.changed:
            self.results[mb_id] = {}
            self.tasks.extend(((mb_id, k), item) for k, item in enumerate(items))
            self._hand_out()

    def apply(self, mb_id: int, payload: Any, files: bool) -> tuple[Any, list[ItemFailed]]:
        """Its results, once all have come; raises PreprocessLost when a process died."""
        count = len(items_of(payload, files))
        with self.changed:
            while len(self.results[mb_id]) < count and self.lost is None:
                self.changed.wait()
            if self.lost is not None:
                raise PreprocessLost(self.lost)
            received = self.results.pop(mb_id)
        results, failed = [], []
        for index in range(count):
            ok, value, *tb = received[index]
            if ok:
                results.append(value)
            else:
                failed.append(ItemFailed(index, value, tb[0]))
        return _received(results, failed, files)

    def _hand_out(self) -> None:
        """Give the waiting items to the processes with room, the least busy first (under `changed`)."""
        while self.tasks:
            p = min(self.processes, key=lambda p: p.queued)
            if p.queued >= self.queued:
                return
            p.queued += 1
            try:
                p.conn.send(self.tasks.popleft())
            except OSError:  # it died: the results thread says so
                pass

    def _collect(self) -> None:
        by_handle: dict[Any, _Process] = {}
        for p in self.processes:
            by_handle[p.conn] = by_handle[p.process.sentinel] = p
        while self.lost is None:
            for handle in wait(list(by_handle)):
                p = by_handle[handle]
                try:
                    key, *outcome = p.conn.recv()
                except (EOFError, OSError):
                    p.process.join(1)
                    self._lose(f"preprocess process {p.process.pid} {_ended(p.process.exitcode)}")
                    return
                with self.changed:
                    mb_id, index = key
                    self.results[mb_id][index] = tuple(outcome)
                    p.queued -= 1
                    self._hand_out()
                    self.changed.notify_all()

    def _lose(self, why: str) -> None:
        log.error("%s; the worker ends and is replaced", why)
        with self.changed:
            self.lost = why
            self.changed.notify_all()


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
