"""A pool of worker processes that survives its workers.

The pool starts `size` workers and keeps each fed with up to `1 + prefetch`
mini-batches (the worker reads the next ones while run() computes), and turns every
way an attempt can end into an event: a result, an error raised by run(), a call that
overran `timeout` (the worker is killed), or a worker that died (segfault,
`os._exit`, the OOM killer). A killed or dead worker is replaced at once; its
replacement runs init() again. A worker whose init() does not report ready within
`init_timeout` fails the pool with InitError, as a failing init() does.

A succeeded attempt's part is written later, with its worker's group (commits.py):
a Placed event says where. What a killed or dead worker held and had not yet run, or
had run but not yet written, comes back as Returned: to be run again, no attempt spent.
So do the calls a worker had in flight together (async run) when it died: which one
brought it down is not known, so each is a suspect and runs again alone on a worker,
where a crash or a timeout is its own attempt's.

The workers are forked from the pool's zygote, which imported their modules (and
`preload`, e.g. pandas for tabular input) once (zygote.py). They and every process they
start share a process group that dies with the pool, however the pool's process ends
(processes.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, NamedTuple

from .contract import PermanentError
from .planning import MiniBatch
from .preprocess import PREPROCESS_LOST, ItemFailed
from .processes import ProcessGroup
from .storage import StorageRefused, StorageUnavailable
from .worker import AttemptFailed, InitFailed, Message, Ok, PartsWritten, Ready, StorageFailed, Timing, WorkerConfig
from .zygote import ForkedProcess, Zygote, ZygoteLost

CANCEL_GRACE = 5.0  # a worker that cancels overdue calls itself (async run) is killed this much later
QUEUE_SECONDS = 0.05  # a worker is sent about this much work at a time, by its pace so far
MAX_QUEUE = 256  # mini-batches sent to a worker and not yet ended, at most


class InitError(PermanentError, RuntimeError):
    """The user's code cannot load: importing the entry script or init() failed."""

    def __init__(self, error: str, tb: str):
        super().__init__(error)
        self.traceback = tb


@dataclass
class Outcome:
    """How one attempt at a mini-batch ended. `items` is None where it is not known."""

    mini_batch: MiniBatch
    items: int | None
    returned: int = 0  # the results run() returned (a failed attempt: 0)
    schema: str | None = None  # the committed part's columns (schemas.schema_to_text)
    error: str | None = None
    traceback: str | None = None
    part_pending: bool = False  # its part comes with a later Placed event
    retry: bool = True  # False: a failed attempt that another would repeat (worker.AttemptFailed)
    side_outputs: int = 0  # files kept for publishing with its commit (sideoutputs.py)
    rejected: tuple[ItemFailed, ...] = ()  # items whose preprocess() raised (worker.Ok)
    item_errors: tuple = ()  # the items run() named as failed: worker.Ok's
    worker: int = -1  # the pool's worker that ran it
    timing: Timing | None = None  # the worker's; a lost or timed-out worker's: the pool's (no run/read seconds)


class Placed(NamedTuple):
    """The part of succeeded mini-batch `id` is written: `file` in the parts folder, at `offset`, `length` bytes."""

    id: int
    file: str
    offset: int
    length: int


class Returned(NamedTuple):
    """A mini-batch whose worker was lost before it ran it, before it wrote its part, or
    while it ran beside others: to be run again. `ran`: its attempt had been reported (as
    an Outcome)."""

    mini_batch: MiniBatch
    ran: bool


Event = Outcome | Placed | Returned


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker process was killed by {name}{hint}"
    if code == PREPROCESS_LOST:
        return "a preprocess process of the worker died (its log says how)"
    return f"worker process exited with code {code}"


class _Worker:
    """Worker `index`, forked by `zygote`: its pipe and process come once the zygote forked it."""

    def __init__(self, zygote: Zygote, index: int, config: WorkerConfig):
        self.index = index
        self.zygote = zygote
        self.ticket = zygote.fork(config, index)
        self._forked: tuple[Connection, ForkedProcess] | None = None
        self.started = time.monotonic()
        self.ready = False
        self.planned = config.plan is not None  # else the plan's header is its first message (WorkerPool.plan)
        self.tasks: deque[MiniBatch] = deque()  # sent, not yet ended; the first one runs
        self.unwritten: dict[int, MiniBatch] = {}  # ran, its part not yet written
        self.in_flight = config.in_flight  # tasks it runs at once, the first ones of `tasks`
        self.allowed = config.run_timeout  # seconds without a task ending before it is killed
        self.deadline = 0.0  # of the first task
        self.first_queue = self.queue = config.in_flight + config.prefetch  # how many tasks it may hold, by its pace
        self.seconds_per_task: float | None = None
        self.reported = 0.0  # when it last reported
        self.told_no_more = False  # that no more mini-batches come for now (feed)
        self.alone = False  # it runs a suspect (WorkerPool._suspects) and is given nothing beside it

    @property
    def conn(self) -> Connection:
        return self._attach()[0]

    @property
    def process(self) -> ForkedProcess:
        return self._attach()[1]

    @property
    def attached(self) -> bool:
        """Whether its pipe and process are here (the zygote forked it)."""
        return self._forked is not None

    def _attach(self) -> tuple[Connection, ForkedProcess]:
        if self._forked is None:
            self._forked = self.zygote.forked(self.ticket)
        return self._forked

    def running(self) -> int:
        """The mini-batch it last started in run() (-1: none), as the worker shows it."""
        return self.zygote.running[self.index]

    def paced(self, ended: int) -> None:
        """`ended` tasks ended since its last report: its queue follows its pace."""
        now = time.monotonic()
        if self.reported and ended:
            pace = (now - self.reported) / ended
            self.seconds_per_task = pace if self.seconds_per_task is None else 0.7 * self.seconds_per_task + 0.3 * pace
            wanted = int(QUEUE_SECONDS / max(self.seconds_per_task, 1e-6))
            self.queue = max(self.first_queue, min(MAX_QUEUE, wanted))
        self.reported = now

    def dump_stacks(self) -> None:
        """Before killing a hung worker: its threads' stacks go to its log (see join_pool)."""
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGUSR1)
            except OSError:
                return
            time.sleep(0.2)

    def kill(self) -> None:
        """Kill it; one not yet forked is not forked."""
        if self._forked is None:
            self.zygote.cancel(self.ticket)
            return
        conn, process = self._forked
        process.kill()
        process.join(5)
        process.close()
        conn.close()


class WorkerPool:
    """`configs[k]` is worker k's config (its env carries its GPUs).

    At most `max_workers` workers start (the first configs): no more than there are
    mini-batches to run. A worker's init() has `init_timeout` seconds to report ready;
    each run() `timeout` seconds, counted from when the worker's previous one ended.

    A pool may start before its run is planned (configs without the plan's header: the
    workers import the entry script and run init() meanwhile); `plan()` then completes it.
    `preload`: modules the zygote imports for the workers.
    """

    def __init__(self, configs: list[WorkerConfig], timeout: float, max_init_crashes: int = 3, *,
                 init_timeout: float = 600, max_workers: int | None = None, preload: tuple[str, ...] = ()):
        if max_workers is not None:
            configs = configs[:max(1, max_workers)]
        self._timeout = timeout
        self._init_timeout = init_timeout
        self._init_crashes = 0
        self._max_init_crashes = max_init_crashes
        self._preload = preload
        self._workers: list[_Worker] = []
        self._suspects: set[int] = set()  # in flight together in a worker that died: each runs alone
        self._leaving: list[_Worker] = []  # told to stop by plan()
        self._zygotes: list[Zygote] = []  # the last one forks; earlier ones died
        self._group = ProcessGroup()
        self._configs = [dataclasses.replace(c, pgid=self._group.pgid, run_timeout=timeout) for c in configs]
        try:
            for k in range(len(self._configs)):
                self._workers.append(self._start(k))
        except BaseException:
            self.close(graceful=False)
            raise

    def _start(self, k: int) -> _Worker:
        """Worker k, forked by the zygote (a new one where there is none, or it died)."""
        if self._zygotes:
            try:
                return _Worker(self._zygotes[-1], k, self._configs[k])
            except ZygoteLost:
                pass
        self._zygotes.append(Zygote(self._group.pgid, _shared_env(self._configs), self._preload, len(self._configs)))
        return _Worker(self._zygotes[-1], k, self._configs[k])

    def plan(self, header: dict, max_workers: int) -> None:
        """The plan is ready: each worker started without it gets its header (replacements
        get it in their config), and the workers beyond `max_workers` (at least one) stop."""
        keep = max(1, max_workers)
        unforked = [w for w in self._workers[keep:] if not w.zygote.answered(w.ticket)]
        for w in unforked:  # it will not be forked
            w.kill()
        self._workers[keep:] = [w for w in self._workers[keep:] if w not in unforked]
        self._listen(0.0, [])  # which have reported ready (no task was sent: no other event can come)
        for w in self._workers[keep:]:
            if w.ready:  # it runs shutdown() and exits (close() waits for it)
                self._leaving.append(w)
                w.conn.send(None)
            else:
                w.kill()
        del self._workers[keep:]
        self._configs = [dataclasses.replace(c, plan=header) for c in self._configs[:keep]]
        for w in self._workers:
            if not w.planned:
                try:
                    w.conn.send(header)
                    w.planned = True
                except OSError:  # it died while the run was planned: wait() replaces it (with the header)
                    pass

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(graceful=exc_type is None)

    @property
    def busy(self) -> bool:
        """Whether a mini-batch is running, waiting in a worker, or has its part still to be written."""
        return any(w.tasks or w.unwritten for w in self._workers)

    def processes(self) -> list[tuple[int, int, str | None]]:
        """(worker index, pid, CUDA_VISIBLE_DEVICES) of each worker forked so far, and (-1, pid, None)
        of the zygote that forks them: what the run report samples (sampling.py). Read from another
        thread: a worker being replaced is left out."""
        found: list[tuple[int, int, str | None]] = [(-1, z.pid, None) for z in self._zygotes[-1:]]
        for w in list(self._workers):
            if w.attached:
                found.append((w.index, w.process.pid, self._configs[w.index].env.get("CUDA_VISIBLE_DEVICES")))
        return found

    def feed(self, pending: deque, line_of: Callable[[MiniBatch], str] = MiniBatch.to_json) -> None:
        """Hand mini-batches from the left of `pending` to the ready workers, each in one message.

        A worker holds up to 1 + prefetch of them, more where they are quick (its queue
        covers about QUEUE_SECONDS of run() calls, at most MAX_QUEUE): fewer messages. It
        never holds more than its share of what is left, so a slow or hanging run() delays
        few others, and every worker has some to the end. `line_of` gives a mini-batch's
        JSON (its line of the plan). Once none is pending, each worker holding some is told
        (an empty list): it writes its parts as soon as it ran them, without waiting for more."""
        left = len(pending) + sum(len(w.tasks) for w in self._workers)
        share = -(-left // len(self._workers))
        for w in self._workers:
            room = min(w.queue, share) - len(w.tasks) if w.ready and not w.alone else 0
            if room <= 0 or not pending:
                continue
            batch = (self._batch(w, pending, room) if self._suspects
                     else [pending.popleft() for _ in range(min(room, len(pending)))])
            if not batch:
                continue
            now = time.monotonic()
            if not w.tasks:
                w.reported = now
            if len(w.tasks) < w.in_flight:  # a task starts at once: its time counts from now
                w.deadline = max(w.deadline if w.tasks else 0.0, now + w.allowed)
            w.tasks.extend(batch)
            w.told_no_more = False
            try:
                w.conn.send([line_of(mb) for mb in batch])
            except OSError:  # it died since it last reported: wait() buries it, and these come back
                pass
        for w in self._workers:
            if not pending and w.ready and (w.tasks or w.unwritten) and not w.told_no_more:
                w.told_no_more = True  # it writes its parts once its tasks are done, without waiting for more
                try:
                    w.conn.send([])
                except OSError:
                    pass

    def _batch(self, w: _Worker, pending: deque, room: int) -> list[MiniBatch]:
        """Up to `room` mini-batches from the left of `pending`, a suspect alone and only to
        a worker that holds none."""
        if pending[0].id in self._suspects:
            if w.tasks:
                return []
            w.alone = True
            return [pending.popleft()]
        batch: list[MiniBatch] = []
        while pending and len(batch) < room and pending[0].id not in self._suspects:
            batch.append(pending.popleft())
        return batch

    def wait(self, timeout: float) -> list[Event]:
        """What happened within `timeout` seconds: attempts that ended, parts written, mini-batches returned."""
        outcomes: list[Event] = []
        dead = self._listen(self._until_next_deadline(timeout), outcomes)
        now = time.monotonic()
        for w in self._workers:
            if w in dead:
                self._bury(w, outcomes)
            elif w.tasks and now >= w.deadline:
                self._time_out(w, outcomes)
            elif not w.ready and now >= w.started + self._init_timeout:
                w.dump_stacks()
                w.kill()
                raise InitError(f"init() did not finish within initTimeout ({self._init_timeout:g} s); "
                                f"raise spec.initTimeout or make init() faster", "")
        return outcomes

    def _until_next_deadline(self, timeout: float) -> float:
        """`timeout`, shortened to the first run() or init() deadline."""
        deadlines = [w.deadline for w in self._workers if w.tasks]
        deadlines += [w.started + self._init_timeout for w in self._workers if not w.ready]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        return timeout

    def _listen(self, timeout: float, outcomes: list[Event]) -> set[_Worker]:
        """Take what the workers send within `timeout`; returns the workers that died."""
        # A worker's pipe and its process's sentinel (Any: wait() gives them back typed as its base classes).
        handles: dict[Any, _Worker] = {}
        for w in self._workers:
            handles[w.conn] = w
            handles[w.process.sentinel] = w
        dead: set[_Worker] = set()
        for handle in wait(list(handles), timeout):
            w = handles[handle]
            if w in dead:
                continue
            if handle is w.conn:
                try:
                    while w.conn.poll():
                        self._receive(w, w.conn.recv(), outcomes)
                    continue
                except (EOFError, OSError):
                    pass
            if not w.process.is_alive():
                dead.add(w)
        return dead

    def _receive(self, w: _Worker, message: Message | list[Message], outcomes: list[Event]) -> None:
        if type(message) is list:  # the results of a run of quick mini-batches
            for m in message:
                self._receive(w, m, outcomes)
            w.paced(len(message))
            return
        # The frequent ones first; tuples unpacked (a match by class pattern costs more).
        if type(message) is Ok:
            mb_id, items, returned, schema, pending, side, rejected, item_errors, timing = message
            mb = self._ended(w, mb_id)
            if pending:
                w.unwritten[mb.id] = mb
            outcomes.append(Outcome(mb, items, returned=returned, schema=schema, part_pending=pending,
                                    side_outputs=side, rejected=rejected, item_errors=item_errors, worker=w.index,
                                    timing=timing))
        elif type(message) is PartsWritten:
            file, entries = message
            unwritten = w.unwritten
            for mb_id, offset, length in entries:
                del unwritten[mb_id]
                outcomes.append(Placed(mb_id, file, offset, length))
        elif type(message) is AttemptFailed:
            outcomes.append(Outcome(self._ended(w, message.id), message.items, error=message.error,
                                    traceback=message.traceback, retry=message.retry, worker=w.index,
                                    timing=message.timing))
        elif type(message) is Ready:
            w.ready = True
            if message.cancels:
                w.allowed = self._timeout + CANCEL_GRACE
        elif type(message) is InitFailed:
            raise InitError(message.error, message.traceback)
        elif type(message) is StorageFailed:
            raise (StorageUnavailable if message.transient else StorageRefused)(message.message)

    def _ended(self, w: _Worker, mb_id: int) -> MiniBatch:
        """One of the worker's running mini-batches ended (in order, unless several are in
        flight): the next one runs, the worker's timeout counted from now."""
        tasks = w.tasks
        if tasks[0].id == mb_id:
            mb = tasks.popleft()
        else:
            at = next(i for i, mb in enumerate(tasks) if mb.id == mb_id)
            mb = tasks[at]
            del tasks[at]
        w.deadline = time.monotonic() + w.allowed
        if self._suspects:
            self._suspects.discard(mb_id)
            w.alone = w.alone and bool(tasks)
        return mb

    def _bury(self, w: _Worker, outcomes: list[Event]) -> None:
        """A worker that died: its attempt failed (or its init() crashed); a new one takes its place."""
        w.process.join(1)
        if w.tasks:
            self._fail_running(w, _describe_exit(w.process.exitcode), outcomes)
        elif not w.ready:
            self._init_crashes += 1
            if self._init_crashes >= self._max_init_crashes:
                raise InitError(f"init() crashed: {_describe_exit(w.process.exitcode)}", "")
        self._replace(w, outcomes)

    def _time_out(self, w: _Worker, outcomes: list[Event]) -> None:
        """A run() call that overran the timeout: the attempt failed; the worker is killed and replaced."""
        error = f"TimeoutError: run() did not return within runInvocationTimeout ({self._timeout:g} s)"
        if w.allowed > self._timeout:  # an async run() whose calls the worker did not cancel in time
            error += (" and its worker's event loop was blocked: a synchronous call inside async run() "
                      "(await it, or use asyncio.to_thread)")
        self._fail_running(w, error, outcomes)
        w.dump_stacks()
        self._replace(w, outcomes)

    def _fail_running(self, w: _Worker, error: str, outcomes: list[Event]) -> None:
        """The attempt `w` was running failed: the one it started last. Results come in lists,
        so with one at a time the ones before it ended unreported: they come back (Returned)
        to run again. With several in flight, each one started and not reported ended comes
        back, a suspect to run alone."""
        running = w.running()
        started = next((i for i, mb in enumerate(w.tasks) if mb.id == running), 0)
        if w.in_flight > 1 and started:
            for _ in range(started + 1):
                mb = w.tasks.popleft()
                self._suspects.add(mb.id)
                outcomes.append(Returned(mb, False))
            return
        outcomes.extend(Returned(w.tasks.popleft(), False) for _ in range(started))
        seconds = time.monotonic() - (w.deadline - w.allowed)  # since its turn began (feed, _ended)
        outcomes.append(Outcome(w.tasks.popleft(), None, error=error, worker=w.index,
                                timing=(time.time() - seconds, seconds, None, None)))

    def _replace(self, w: _Worker, outcomes: list[Event]) -> None:
        """Kill `w` and start its successor; what it held comes back (Returned)."""
        outcomes.extend(Returned(mb, True) for mb in w.unwritten.values())
        outcomes.extend(Returned(mb, False) for mb in w.tasks)
        w.tasks.clear()
        w.unwritten.clear()
        w.kill()
        self._workers[w.index] = self._start(w.index)

    def close(self, graceful: bool = True) -> None:
        """Stop the workers: when graceful, idle ones run shutdown() and exit; the rest
        (busy, still in init(), or all when not graceful) are killed, and so is every
        process they started. Idempotent."""
        leaving, self._leaving = self._leaving, []
        stopping = list(leaving)
        for w in self._workers:
            if graceful and w.ready and not w.tasks and not w.unwritten and w.process.is_alive():
                try:
                    w.conn.send(None)
                    stopping.append(w)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for w in stopping:
            w.process.join(max(0.0, deadline - time.monotonic()))
        for w in self._workers + leaving:
            w.kill()
        for z in self._zygotes:
            z.close()
        self._group.close()


def _shared_env(configs: list[WorkerConfig]) -> dict[str, str]:
    """What every worker's environment has (thread counts, model paths), for the zygote:
    never CUDA_VISIBLE_DEVICES, which is each worker's own."""
    first = configs[0].env
    return {k: v for k, v in first.items()
            if k != "CUDA_VISIBLE_DEVICES" and all(c.env.get(k) == v for c in configs)}
