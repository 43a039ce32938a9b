"""The worker process: imports the entry script, calls init() once, then run() per mini-batch.

It reads its mini-batches itself and writes their output parts itself, so only small
messages cross the pipe to the shard process:

    worker → shard   Ready()  InitFailed(error, traceback)
                     Ok(id, items, returned, schema, part_pending)
                     AttemptFailed(id, items or None, error, traceback)
                     PartsWritten(file, [(id, offset, length), ...]): parts of Ok mini-batches
                     StorageFailed(message, transient): writing parts failed, the run stops
    shard → worker   a mini-batch as JSON, or None to stop

The shard sends a worker up to 1 + `prefetch` mini-batches at a time: a fetcher thread
reads the next ones (remote files fetched concurrently) while run() computes the
current one. Parts are kept in a PartGroup (commits.py) and written a group at a time:
when it is full or old, or when no mini-batch waits for more than IDLE_FLUSH_SECONDS.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import NamedTuple

from .commits import PartGroup
from .layout import Layout
from .outputs import ResultError, encode_part, result_length, schema_to_text
from .plan import MiniBatch, Plan
from .processes import join_pool
from .readers import Reader
from .spec import LoggingLevel, OutputFormat
from .storage import StorageError, filesystem

IDLE_FLUSH_SECONDS = 0.02  # a worker with no mini-batch waiting writes its parts after this long


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs, all plain data (it crosses to a spawned process)."""

    worker: str  # "<shard>.<k>", for its log lines
    env: dict[str, str]  # model and side-input paths, its GPUs, thread counts
    entry_script: str
    arguments: list[str]
    logging_level: LoggingLevel
    plan: dict  # the plan's header
    scratch: str
    output_uri: str
    run_id: str
    output_format: OutputFormat
    append_row: bool
    prefetch: int = 2  # mini-batches read ahead while run() computes (spec.prefetchMiniBatches)
    log_path: str | None = None  # its stdout and stderr, else the shard's
    pgid: int | None = None  # the pool's process group (processes.join_pool), set by the pool
    parent_pid: int | None = None


class Ready(NamedTuple):
    """init() returned: the worker takes mini-batches."""


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


class PartsWritten(NamedTuple):
    """A group of parts is published in `file` (in the parts folder): (mini-batch, offset, length) each."""

    file: str
    entries: list[tuple[int, int, int]]


class AttemptFailed(NamedTuple):
    """An attempt failed: run() raised, or reading the mini-batch did (`items` None: not read)."""

    id: int
    items: int | None
    error: str
    traceback: str


class StorageFailed(NamedTuple):
    """Parts could not be written: no attempt can succeed."""

    message: str
    transient: bool


Message = Ready | InitFailed | Ok | AttemptFailed | PartsWritten | StorageFailed


def load_entry_script(path: str):
    """Import the user's scoring script as a module named after its file."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
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


def worker_main(conn, config: WorkerConfig) -> None:
    """Entry point of a worker process; `config` is built by the shard, completed by the pool."""
    join_pool(config.pgid, config.parent_pid)  # dies with the pool, whatever ends it
    if config.log_path:
        _redirect_output(config.log_path)
    os.environ.update(config.env)
    logging.basicConfig(level=config.logging_level, force=True,
                        format=f"%(asctime)s %(levelname)s [worker {config.worker}] %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # azure-core logs every request at INFO
    sys.argv = [config.entry_script, *config.arguments]
    sys.path.insert(0, os.path.dirname(config.entry_script))
    where = f"importing {os.path.basename(config.entry_script)}"
    try:
        module = load_entry_script(config.entry_script)
        if callable(getattr(module, "init", None)):
            where = "init()"
            module.init()
    except BaseException as e:  # noqa: BLE001 - any failure to load is reported, then this process ends
        conn.send(InitFailed(_failure(e, where), traceback.format_exc()))
        return
    conn.send(Ready())
    _Worker(conn, config, module).serve()
    if callable(getattr(module, "shutdown", None)):
        module.shutdown()


_STOP = object()


class _Worker:
    def __init__(self, conn, config: WorkerConfig, module):
        self.conn, self.config, self.module = conn, config, module
        self.reader = Reader(Plan.from_header(config.plan), config.scratch)
        out_fs, out_path = filesystem(config.output_uri)
        layout = Layout(out_path, config.run_id, config.output_format)
        self.group = PartGroup(out_fs, layout, config.worker.replace(".", "-"))
        self.ready: queue.SimpleQueue = queue.SimpleQueue()  # (mini-batch, (payload, items) or exception)
        self.refused = False  # the output refused a group of parts: nothing more is written

    def serve(self) -> None:
        """Run mini-batches until told to stop (or the output refuses parts); write the parts still held."""
        threading.Thread(target=self._fetch, name="parallelrun-prefetch", daemon=True).start()
        while (item := self._next()) is not _STOP:
            self._run(*item)
            if self.group.due() and not self._write_parts():
                return
        self._write_parts()

    def _next(self):
        """The next read mini-batch; parts held are written first when none comes soon."""
        if self.group.count:
            try:
                return self.ready.get(timeout=max(0.0, min(IDLE_FLUSH_SECONDS,
                                                           self.group.deadline() - time.monotonic())))
            except queue.Empty:
                if not self._write_parts():
                    return _STOP
        return self.ready.get()

    def _fetch(self) -> None:
        """The fetcher thread: receive mini-batches and read them, in order."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
            if message is None:
                self.ready.put(_STOP)
                return
            mb = MiniBatch.from_json(message)
            try:
                self.ready.put((mb, self.reader.read(mb)))
            except BaseException as e:  # noqa: BLE001 - reading failed: the attempt fails in order
                self.ready.put((mb, e))

    def _run(self, mb: MiniBatch, read) -> None:
        items = None
        try:
            if isinstance(read, BaseException):
                raise read
            payload, items = read
            result = self.module.run(payload)
            returned = result_length(result)
            if returned > items:
                raise ResultError(f"run() returned {returned:,} results for {items:,} items; return at most "
                                  "one element or row per item")
            schema = None
            pending = self.config.append_row and returned > 0
            if pending:
                part = encode_part(result, self.config.output_format)
                self.group.add(mb.id, part.data)
                schema = schema_to_text(part.schema) if part.schema is not None else None
            self.conn.send(Ok(mb.id, items, returned, schema, pending))
        except BaseException as e:  # noqa: BLE001 - a failed attempt, even sys.exit(): the worker goes on
            self.conn.send(AttemptFailed(mb.id, items, _failure(e, "run()"), traceback.format_exc()))
        finally:
            self.reader.cleanup(mb)

    def _write_parts(self) -> bool:
        """Publish the group of parts held; False when the output cannot take it (reported)."""
        if self.refused or not self.group.count:
            return not self.refused
        try:
            self.conn.send(PartsWritten(*self.group.write()))
        except StorageError as e:  # the output cannot take the parts: no attempt can succeed
            self.conn.send(StorageFailed(str(e), e.transient))
            self.refused = True
        return not self.refused

