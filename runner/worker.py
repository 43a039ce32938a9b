"""The worker process: imports the entry script, calls init() once, then run() per mini-batch.

It reads its mini-batches itself and writes their output parts itself, so only small
messages cross the pipe to the shard process:

    worker → shard   Ready()  InitFailed(error, traceback)
                     Ok(id, items, returned, schema, part_pending, side_outputs, rejected, item_errors, timing)
                     AttemptFailed(id, items or None, error, traceback, retry, timing)
                     PartsWritten(file, [(id, offset, length), ...]): parts of Ok mini-batches
                     StorageFailed(message, transient): writing parts failed, the run stops
    shard → worker   a list of mini-batches as JSON (an empty one: no more for now), or
                     None to stop; first, the plan's header, where the worker started
                     before the run was planned

Ok and AttemptFailed travel in lists: a worker reports its results when it has no
mini-batch at hand, before it writes parts, and else within REPORT_SECONDS (a reporter
thread sends what waits longer, so a result never waits behind a long run() call):
quick mini-batches share a message. Where the input is remote, a fetcher thread reads up to `prefetch`
mini-batches ahead (their files fetched concurrently) while run() computes the current
one; input on a local disk is read when its turn comes (no wait to hide). Parts are kept in a
PartGroup (commits.py) and written a group at a time: when it is full or old, when
no mini-batch comes within IDLE_FLUSH_SECONDS, or at once when the shard said that no
more are coming for now (its last ones are not kept waiting); a writer thread publishes
each group while run() goes on with the next mini-batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import inspect
import logging
import os
import queue
import shutil
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from .commits import GroupFile, PartGroup
from .context import UnusableInput, context_of, wants_context
from .layout import Layout
from .outputs import ItemError, ResultError, ResultTypeError, empty_columns, encode_part, result_length, split_results
from .planning import MiniBatch, Plan
from .preprocess import PREPROCESS_LOST, ItemFailed, PreprocessLost
from .preprocess import start as start_preprocess
from .processes import join_pool
from .readers import Reader
from .schemas import schema_to_text
from .sideoutputs import ENV_VARS as SIDE_OUTPUT_VARS
from .sideoutputs import SideFolder
from .spec import LoggingLevel, OutputFormat
from .storage import StorageError, filesystem, is_local

COMPAT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat")
IDLE_FLUSH_SECONDS = 0.02  # a worker with no mini-batch waiting writes its parts after this long
REPORT_SECONDS = 0.02  # results are reported at least this often


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs, all plain data (it crosses to the zygote that forks it)."""

    worker: str  # "<shard>.<k>", for its log lines
    env: dict[str, str]  # model and side-input paths, its GPUs, thread counts
    entry_script: str
    arguments: list[str]
    logging_level: LoggingLevel
    plan: dict | None  # the plan's header; None: it is the first message (WorkerPool.plan)
    scratch: str
    output_uri: str
    run_id: str
    output_format: OutputFormat
    append_row: bool
    many_results: bool = False  # spec.output.resultsPerItem: many, any number of results per item
    prefetch: int = 2  # mini-batches read ahead while run() computes (spec.prefetchMiniBatches)
    preprocess: int = 0  # its preprocess processes (spec.preprocessProcesses, shared out; preprocess.py)
    in_flight: int = 1  # calls of an async run() at once (spec.miniBatchesInFlight)
    run_timeout: float = 60  # seconds per run() call (spec.runInvocationTimeout), set by the pool
    log_path: str | None = None  # its stdout and stderr, else the shard's
    pgid: int | None = None  # the pool's process group (processes.join_pool), set by the pool
    parent_pid: int | None = None


# An attempt's times, for the run report (records.AttemptLine): (when the worker took it up,
# time.time(); its wall seconds; seconds in run(); reading its input), the last two None where
# not known (the pool's, for a worker lost or timed out). A plain tuple: it crosses the pipe
# with every result, at a third of a NamedTuple's pickled size.
Timing = tuple[float, float, float | None, float | None]


class Ready(NamedTuple):
    """init() returned: the worker takes mini-batches. `cancels`: run() is async, the worker
    cancels a call that overruns run_timeout itself (the pool's kill is the backstop)."""

    cancels: bool = False


class InitFailed(NamedTuple):
    """Importing the entry script or init() failed; the worker has ended."""

    error: str
    traceback: str


class Ok(NamedTuple):
    """run() returned `returned` results for `items` items; `part_pending`: its part waits
    in the worker's group, a later PartsWritten says where it lies."""

    id: int
    items: int
    returned: int
    schema: str | None
    part_pending: bool
    side_outputs: int = 0  # files run() wrote to its side-output folder, kept for the commit
    rejected: tuple[ItemFailed, ...] = ()  # items whose preprocess() raised: failed, not given to run()
    item_errors: tuple[ItemError, ...] = ()  # the items run() named as failed (outputs.Results)
    timing: Timing | None = None


class PartsWritten(NamedTuple):
    """A group of parts is published in `file` (in the parts folder): (mini-batch, offset, length) each."""

    file: str
    entries: list[tuple[int, int, int]]


class AttemptFailed(NamedTuple):
    """An attempt failed: run() raised, or reading the mini-batch did (`items` None: not read);
    `retry` False: another attempt would fail the same way."""

    id: int
    items: int | None
    error: str
    traceback: str
    retry: bool = True
    timing: Timing | None = None


class StorageFailed(NamedTuple):
    """Parts could not be written: no attempt can succeed."""

    message: str
    transient: bool


Message = Ready | InitFailed | Ok | AttemptFailed | PartsWritten | StorageFailed


def load_entry_script(path: str):
    """Import the user's scoring script as a module named after its file."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError(f"{path} has no run(mini_batch) function")
    return module


def _redirect_output(log_path: str) -> None:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _failure(e: BaseException, where: str) -> str:
    """`ValueError: bad input`; a BaseException that is no Exception (SystemExit,
    KeyboardInterrupt) also says where it came from: `SystemExit: 3 raised by run()`."""
    if isinstance(e, Exception):
        return f"{type(e).__name__}: {e}"
    return f"{type(e).__name__}{f': {e}' if str(e) else ''} raised by {where}"


def worker_main(conn, config: WorkerConfig, running=None) -> None:
    """Entry point of a worker process; `config` is built by the shard, completed by the pool.
    `running` (its `.value` in shared memory) shows the pool the mini-batch in run(), should this process die."""
    join_pool(config.pgid, config.parent_pid)  # dies with the pool, whatever ends it
    if config.log_path:
        _redirect_output(config.log_path)
    os.environ.update(config.env)
    if config.in_flight == 1:  # calls in flight together share the environment: each has context.output_dir
        os.environ.update(dict.fromkeys(SIDE_OUTPUT_VARS, _side_folder(config)))
    logging.basicConfig(level=config.logging_level, force=True,
                        format=f"%(asctime)s %(levelname)s [worker {config.worker}] %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # azure-core logs every request at INFO
    sys.argv = [config.entry_script, *config.arguments]
    sys.path.insert(0, os.path.dirname(config.entry_script))
    sys.path.append(COMPAT_DIR)  # AML's azureml_user.parallel_run, where the real one is not installed
    where = f"importing {os.path.basename(config.entry_script)}"
    loop = None  # the event loop of an async run(), and of an async init() or shutdown()
    try:
        module = load_entry_script(config.entry_script)
        preprocess = start_preprocess(module, config.preprocess, conn, _failure)  # forked before init()
        asynchronous = _is_async(module.run)
        if config.in_flight > 1 and not asynchronous:
            raise InFlightError(f"spec.miniBatchesInFlight is {config.in_flight} but run() in "
                                f"{os.path.basename(config.entry_script)} is synchronous: make it "
                                "`async def run(mini_batch)` or set spec.miniBatchesInFlight to 1")
        if asynchronous:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        if callable(getattr(module, "init", None)):
            where = "init()"
            _call(module.init, loop)
    except BaseException as e:  # noqa: BLE001 - any failure to load is reported, then this process ends
        conn.send(InitFailed(_failure(e, where), traceback.format_exc()))
        return
    conn.send(Ready(cancels=asynchronous))
    if config.plan is None:  # started while the run was planned: its header comes first (None: stop)
        config = dataclasses.replace(config, plan=_receive(conn))
    if config.plan is not None:
        worker = _InFlight(conn, config, module, running, loop, preprocess) if loop else \
            _Worker(conn, config, module, running, preprocess)
        worker.serve()
    if callable(getattr(module, "shutdown", None)):
        _call(module.shutdown, loop)
    _exit()


class InFlightError(Exception):
    """spec.miniBatchesInFlight > 1 with a synchronous run(): nothing could run concurrently."""


def _is_async(run) -> bool:
    """Whether run() is a coroutine function (or an object whose __call__ is one)."""
    return inspect.iscoroutinefunction(run) or inspect.iscoroutinefunction(type(run).__call__)


def _call(function, loop: asyncio.AbstractEventLoop | None):
    """Call init() or shutdown(); one that is async runs to its end on the worker's loop."""
    result = function()
    if inspect.isawaitable(result):
        if loop is None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        return loop.run_until_complete(result)
    return result


def _side_folder(config: WorkerConfig) -> str:
    return os.path.join(config.scratch, "outputs")


def _exit(code: int = 0) -> None:
    """End the process without the interpreter's teardown (freeing every object of pandas,
    pyarrow and the model took 0.3-0.7 s that the pool's close waited for): its parts are
    written and shutdown() has run. Logs and output are flushed; atexit handlers do not
    run (shutdown() is the place to clean up)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_STOP = object()
_FLUSH = object()  # the shard has no more mini-batches for now: write the parts held


def _receive(conn) -> Any:
    """The shard's next message, None where it is gone or says stop: the plan's header first to a
    worker started before the run was planned, then lists of mini-batches' lines."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _payload(read):
    """(payload, items) of a read mini-batch; reading's exception is raised: the attempt fails."""
    if isinstance(read, BaseException):
        raise read
    return read


def _read(reader: Reader, mb: MiniBatch):
    """(mini-batch, (payload, items) or the exception reading raised, seconds it took): the attempt
    fails in order."""
    started = time.perf_counter()
    try:
        read = reader.read(mb)
    except BaseException as e:  # noqa: BLE001 - reported as the attempt's failure
        read = e
    return mb, read, time.perf_counter() - started


class _Inline:
    """Mini-batches read when their turn comes: input on a local disk has no fetch to overlap."""

    def __init__(self, conn, reader: Reader):
        self.conn, self.reader = conn, reader
        self.batches: deque[MiniBatch] = deque()  # received, not yet taken

    def at_hand(self) -> bool:
        return bool(self.batches)

    def wait(self, timeout: float | None) -> bool:
        return bool(self.batches) or self.conn.poll(timeout)

    def take(self):
        if not self.batches:
            message = _receive(self.conn)
            if message is None:
                return _STOP
            if not message:
                return _FLUSH
            self.batches.extend(MiniBatch.many_from_json(message))
        return _read(self.reader, self.batches.popleft())

    def done(self) -> None:
        pass


class _Prefetch:
    """A fetcher thread reads up to `prefetch` mini-batches ahead of those run() computes; `submit`
    gets each one read (its id and payload), for its preprocessing to start."""

    def __init__(self, conn, reader: Reader, prefetch: int, in_flight: int = 1, submit=None):
        self.conn, self.reader, self.submit = conn, reader, submit
        self.ready: queue.SimpleQueue = queue.SimpleQueue()  # (mini-batch, read), in order; _STOP last
        self.slots = threading.Semaphore(in_flight + prefetch)  # read or running: those in flight + prefetch
        self.received = self.taken = 0
        self.peeked = None
        threading.Thread(target=self._fetch, name="parallelrun-prefetch", daemon=True).start()

    def at_hand(self) -> bool:
        return self.received > self.taken

    def wait(self, timeout: float | None) -> bool:
        """Whether a mini-batch (or _STOP, _FLUSH) is at hand within `timeout` seconds (None: until one is)."""
        if self.peeked is None:
            try:
                self.peeked = self.ready.get(timeout=timeout)
            except queue.Empty:
                return False
        return True

    def take(self):
        item, self.peeked = (self.peeked if self.peeked is not None else self.ready.get()), None
        self.taken += item is not _STOP and item is not _FLUSH
        return item

    def done(self) -> None:
        self.slots.release()

    def _fetch(self) -> None:
        while (message := _receive(self.conn)) is not None:
            if not message:
                self.ready.put(_FLUSH)
            self.received += len(message)
            for mb in MiniBatch.many_from_json(message):
                self.slots.acquire()
                item = _read(self.reader, mb)
                if self.submit is not None and not isinstance(item[1], BaseException):
                    self.submit(mb.id, item[1][0])
                self.ready.put(item)
        self.ready.put(_STOP)


class _Worker:
    reads_ahead = False  # read on the fetcher thread whatever the input (else where it is remote)

    def __init__(self, conn, config: WorkerConfig, module, running=None, preprocess=None):
        self.conn, self.config, self.module = conn, config, module
        self.running = running
        self.preprocess = preprocess
        assert config.plan is not None  # worker_main serves once it has the plan's header
        self.plan = Plan.from_header(config.plan)
        self.reader = Reader(self.plan, config.scratch)
        self.with_context = wants_context(module.run)  # AML v2's run(mini_batch, mini_batch_context)
        out_fs, out_path = filesystem(config.output_uri)
        layout = Layout(out_path, config.run_id, config.output_format)
        self.group = PartGroup(out_fs, layout, config.worker.replace(".", "-"))
        self.side = SideFolder(_side_folder(config), out_fs, layout)
        self.results: list[Ok | AttemptFailed] = []  # not yet reported
        self.first_result = 0.0  # when the oldest of them came
        self.sending = threading.Lock()  # results and the pipe, shared with the reporter and writer threads
        self.writer = _PartWriter(self._send)
        remote = not is_local(self.reader.fs)
        self.files = self.plan.input_type == "files"
        submit = preprocess.submitter(self.files) if preprocess is not None else None
        self.source: _Prefetch | _Inline
        if submit is not None:  # each mini-batch's items go to the preprocess processes once it is read
            self.source = _Prefetch(conn, self.reader, max(1, config.prefetch), config.in_flight, submit)
        else:
            self.source = (_Prefetch(conn, self.reader, config.prefetch, config.in_flight)
                           if (remote and config.prefetch) or self.reads_ahead else _Inline(conn, self.reader))
        self.read_ahead = isinstance(self.source, _Prefetch)  # an attempt's read is not in its wall time

    def serve(self) -> None:
        """Run mini-batches until told to stop (or the output refuses parts); write the parts still held."""
        threading.Thread(target=self._reporter, name="parallelrun-reporter", daemon=True).start()
        if self._score():
            self._write_parts()
            self.writer.wait()
            self._report()

    def _score(self) -> bool:
        """Run mini-batches until told to stop; False when the output refused parts."""
        while (item := self._next()) is not _STOP:
            if item is _FLUSH:
                if not self._write_parts():
                    return False
                continue
            started = time.monotonic()
            self._run(*item)
            self.source.done()
            slow = time.monotonic() - started >= self.group.max_seconds  # its part is not kept behind the next
            if (slow or self.group.due()) and not self._write_parts():
                return False
        return True

    def _send(self, message: Message) -> None:
        with self.sending:
            self.conn.send(message)

    def _result(self, result: Ok | AttemptFailed) -> None:
        with self.sending:
            if not self.results:
                self.first_result = time.monotonic()
            self.results.append(result)

    def _report(self, older_than: float = 0.0) -> None:
        """Send the results not yet reported (those waiting longer than `older_than` seconds)."""
        with self.sending:
            if self.results and time.monotonic() - self.first_result >= older_than:
                self.conn.send(self.results)
                self.results = []

    def _reporter(self) -> None:
        while True:
            time.sleep(REPORT_SECONDS / 2)
            self._report(older_than=REPORT_SECONDS)

    def _next(self):
        """The next read mini-batch. With none at hand, the results are reported first, and
        the parts held written if no mini-batch comes within IDLE_FLUSH_SECONDS."""
        if not self.source.at_hand():
            self._report()
            deadline = self.group.deadline()
            if deadline is not None:
                timeout = max(0.0, min(IDLE_FLUSH_SECONDS, deadline - time.monotonic()))
                if not self.source.wait(timeout) and not self._write_parts():
                    return _STOP
        return self.source.take()

    def _run(self, mb: MiniBatch, read, read_seconds: float) -> None:
        items = None
        if self.running is not None:
            self.running.value = mb.id
        began = time.perf_counter() - (0.0 if self.read_ahead else read_seconds)
        run_seconds = 0.0
        try:
            payload, items = _payload(read)
            payload, rejected = self._preprocessed(mb, payload)
            self.side.begin()
            run_started = time.perf_counter()
            try:
                result = [] if rejected and not payload else \
                    self.module.run(*self._arguments(mb, payload, self.side))
            finally:
                run_seconds = time.perf_counter() - run_started
            self._returned(mb, items, result, self.side, rejected, _timing(began, run_seconds, read_seconds))
        except PreprocessLost:  # the pool fails this attempt and replaces the worker (and its preprocess processes)
            self._report()
            _exit(PREPROCESS_LOST)
        except BaseException as e:  # noqa: BLE001 - a failed attempt, even sys.exit(): the worker goes on
            self._raised(mb, items, e, _timing(began, run_seconds, read_seconds))
        finally:
            self.reader.cleanup(mb)

    def _preprocessed(self, mb: MiniBatch, payload) -> tuple[Any, list[ItemFailed]]:
        """What run() gets: `payload` through preprocess(), and the items it failed (none without one)."""
        if self.preprocess is None:
            return payload, []
        return self.preprocess.apply(mb.id, payload, self.files)

    def _arguments(self, mb: MiniBatch, payload, side: SideFolder) -> tuple:
        """run()'s arguments: the mini-batch, and its context where run takes two parameters."""
        return (payload, context_of(mb, self.plan, side.path)) if self.with_context else (payload,)

    def _returned(self, mb: MiniBatch, items: int, result, side: SideFolder, rejected: list[ItemFailed],
                  timing: Timing) -> None:
        """run() returned `result` for the items preprocess() did not fail (`rejected`): its part goes
        to the group, its Ok to the results (a result that cannot be one raises, a failed attempt)."""
        given = items - len(rejected)
        result, item_errors = split_results(result, given)
        returned = result_length(result)
        if returned > given and not self.config.many_results:
            raise ResultError(f"run() returned {returned:,} results for {given:,} items; return at most "
                              "one element or row per item")
        schema = None
        pending = self.config.append_row and returned > 0
        if pending:
            part = encode_part(result, self.config.output_format, self.reader.types)
            schema = schema_to_text(part.schema) if part.schema is not None else None
            self.group.add(mb.id, part.data)  # last: a failed attempt has no part in the group
        elif self.config.append_row and (columns := empty_columns(result)) is not None:
            schema = schema_to_text(columns)  # no rows, but the output's columns
        self._result(Ok(mb.id, items, returned, schema, pending, side.keep(mb.id), tuple(rejected), item_errors,
                        timing))

    def _raised(self, mb: MiniBatch, items: int | None, e: BaseException, timing: Timing) -> None:
        """run() (or reading its mini-batch) raised `e`, being handled: a failed attempt."""
        if isinstance(e, UnusableInput):  # no mini-batch can succeed: the run stops, as when init() fails
            self._report()
            self._send(InitFailed(_failure(e, "run()"), traceback.format_exc()))
            _exit()
        self._result(AttemptFailed(mb.id, items, _failure(e, "run()"), traceback.format_exc(),
                                   retry=not isinstance(e, ResultTypeError), timing=timing))

    def _write_parts(self) -> bool:
        """Hand the group of parts held to the writer; False when the output refused a group (reported)."""
        if self.group.count and not self.writer.refused:
            self._report()  # the shard learns of the mini-batches before where their parts are
            self.writer.submit(self.group.take())
        return not self.writer.refused


class _Attempt:
    """One call of an async run(): its mini-batch, side-output folder and timer."""

    def __init__(self, mb: MiniBatch, side: SideFolder):
        self.mb, self.side = mb, side
        self.items: int | None = None  # once read
        self.expired = False  # it overran run_timeout: cancelled, its failure reported
        self.began = time.perf_counter()  # when the worker took it up (read ahead: its read is not in it)
        self.read_seconds: float | None = None
        self.run_seconds: float | None = None  # once its call ended
        self.timer: asyncio.TimerHandle | None = None


class _InFlight(_Worker):
    """An async run(): up to `in_flight` mini-batches in flight on one event loop. Each call has
    run_timeout seconds from its start; one that overruns it is cancelled and its attempt fails,
    while the others go on (a call that ignores its cancellation is left behind, its result
    dropped). Each attempt has a side-output folder of its own (mini_batch_context.output_dir).
    Mini-batches are read on the fetcher thread, and waited for on a thread of its own:
    neither holds up the calls in flight."""

    reads_ahead = True

    def __init__(self, conn, config: WorkerConfig, module, running, loop: asyncio.AbstractEventLoop,
                 preprocess=None):
        super().__init__(conn, config, module, running, preprocess)
        self.loop = loop
        self.live = 0  # calls in flight, not expired
        self.folders = [self.side]  # side-output folders free for an attempt
        self.made = 1  # side-output folders made
        self.changed = asyncio.Event()  # a call ended or expired, or a mini-batch is at hand
        self.waiter = ThreadPoolExecutor(1, thread_name_prefix="parallelrun-wait")
        # preprocess() results are waited for in start order, off the loop
        self.preprocessing = ThreadPoolExecutor(1, thread_name_prefix="parallelrun-preprocess")

    def _score(self) -> bool:
        return self.loop.run_until_complete(self._in_flight())

    async def _in_flight(self) -> bool:
        waiting: asyncio.Future | None = None  # for the source to have a mini-batch at hand
        stopping = False
        while not stopping or self.live:
            if self.writer.refused:
                return False
            if waiting is not None and waiting.done():
                waiting = None
            while waiting is None and not stopping and self.live < self.config.in_flight and self.source.wait(0):
                item = self.source.take()
                if item is _STOP:
                    stopping = True
                elif item is _FLUSH:
                    if not self._write_parts():
                        return False
                else:
                    self._start(*item)
            if stopping and not self.live:
                break
            if waiting is None and not stopping and self.live < self.config.in_flight:
                waiting = self.loop.run_in_executor(self.waiter, self.source.wait, None)
                waiting.add_done_callback(lambda _: self.changed.set())
            if self.group.due() and not self._write_parts():
                return False
            timeout = None
            deadline = self.group.deadline()
            if deadline is not None:  # no call ends within IDLE_FLUSH_SECONDS: the parts held are written
                timeout = max(0.0, min(IDLE_FLUSH_SECONDS, deadline - time.monotonic()))
            elif not self.live:
                self._report()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout)
            except asyncio.TimeoutError:
                if not self._write_parts():
                    return False
            self.changed.clear()
        return True

    def _start(self, mb: MiniBatch, read, read_seconds: float) -> None:
        if self.running is not None:
            self.running.value = mb.id  # the last started: those before it in the pool's list are in flight
        if not self.folders:
            self.folders.append(SideFolder(f"{_side_folder(self.config)}-{self.made}", self.side.fs,
                                           self.side.layout))
            self.made += 1
        attempt = _Attempt(mb, self.folders.pop())
        attempt.read_seconds = read_seconds
        if self.config.in_flight == 1:  # one call at a time: the environment names its folder
            os.environ.update(dict.fromkeys(SIDE_OUTPUT_VARS, attempt.side.path))
        self.live += 1
        task = self.loop.create_task(self._call(attempt, read))
        attempt.timer = self.loop.call_later(self.config.run_timeout, self._expire, attempt, task)

    async def _call(self, attempt: _Attempt, read) -> None:
        mb = attempt.mb
        try:
            payload, attempt.items = _payload(read)
            rejected: list[ItemFailed] = []
            if self.preprocess is not None:
                payload, rejected = await self.loop.run_in_executor(self.preprocessing, self._preprocessed, mb,
                                                                    payload)
            attempt.side.begin()
            run_started = time.perf_counter()
            try:
                result = [] if rejected and not payload else await self.module.run(
                    *self._arguments(mb, payload, attempt.side))
            finally:
                attempt.run_seconds = time.perf_counter() - run_started
            if not attempt.expired:
                self._returned(mb, attempt.items, result, attempt.side, rejected, self._timing(attempt))
        except PreprocessLost:  # as in _Worker._run
            self._report()
            _exit(PREPROCESS_LOST)
        except BaseException as e:  # noqa: BLE001 - a failed attempt, even sys.exit(): the calls go on
            if not attempt.expired:
                self._raised(mb, attempt.items, e, self._timing(attempt))
        finally:
            if attempt.expired:  # its failure was reported; its folder is nobody's
                shutil.rmtree(attempt.side.path, ignore_errors=True)
            else:
                if attempt.timer is not None:
                    attempt.timer.cancel()
                self.reader.cleanup(mb)
                self.folders.append(attempt.side)
                self._ended()

    def _expire(self, attempt: _Attempt, task: asyncio.Task) -> None:
        attempt.expired = True
        task.cancel()
        self._result(AttemptFailed(attempt.mb.id, attempt.items,
                                   f"TimeoutError: run() did not return within runInvocationTimeout "
                                   f"({self.config.run_timeout:g} s); the call was cancelled", "",
                                   timing=self._timing(attempt)))
        self._ended()

    @staticmethod
    def _timing(attempt: _Attempt) -> Timing:
        return _timing(attempt.began, attempt.run_seconds, attempt.read_seconds)

    def _ended(self) -> None:
        self.live -= 1
        self.source.done()
        self.changed.set()


def _timing(began: float, run_seconds: float | None, read_seconds: float | None) -> Timing:
    """The times of an attempt the worker took up at `began` (time.perf_counter()) and ends now."""
    now = time.perf_counter()
    return time.time() - (now - began), now - began, run_seconds, read_seconds


class _PartWriter:
    """Publishes a worker's groups of parts on a thread of its own, one at a time, while
    run() computes the next mini-batches: writing a group (a disk's fsync, an object
    store's PUT) does not hold scoring up. A group waits while the one before it is
    written (two in memory at most); a group the output refuses stops the writes
    (StorageFailed is sent, `refused` set). An unexpected error is raised in the worker's
    thread at its next submit() or wait(), as it would have been had it written the group."""

    def __init__(self, send: Callable[[Message], None]):
        self.send = send
        self.refused = False
        self._groups: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._error: BaseException | None = None
        threading.Thread(target=self._write, name="parallelrun-writer", daemon=True).start()

    def submit(self, group: GroupFile) -> None:
        self.wait()
        if not self.refused:
            self._idle.clear()
            self._groups.put(group)

    def wait(self) -> None:
        """Until the group being written (if any) is published or refused."""
        self._idle.wait()
        if self._error is not None:
            raise self._error

    def _write(self) -> None:
        while True:
            group = self._groups.get()
            written: PartsWritten | StorageFailed
            try:
                try:
                    written = PartsWritten(*group.write())
                except StorageError as e:  # the output cannot take the parts: no attempt can succeed
                    written = StorageFailed(str(e), e.transient)
                    self.refused = True
                self.send(written)
            except BaseException as e:  # noqa: BLE001 - a bug, or the pipe closed: raised in the worker's thread
                self._error = e
                return
            finally:
                self._idle.set()
