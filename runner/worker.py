"""The worker process: imports the entry script, calls init() once, then run() per mini-batch.

It reads its mini-batches itself and commits their output part itself, so only small
messages cross the pipe to the shard process:

    worker → shard   Ready()  InitFailed(error, traceback)
                     Ok(id, items, returned, schema or None)  AttemptFailed(id, items or None, error, traceback)
                     StorageFailed(message, transient): writing the part failed, the run stops
    shard → worker   a mini-batch as JSON, or None to stop
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import NamedTuple

from .layout import Layout
from .outputs import ResultError, encode_part, result_length, schema_to_text
from .plan import MiniBatch, Plan
from .processes import join_pool
from .readers import Reader
from .spec import LoggingLevel, OutputFormat
from .storage import StorageError, filesystem, write_atomic


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
    """run() returned `returned` results for `items` items; the part (if any) is committed."""

    id: int
    items: int
    returned: int
    schema: str | None


class AttemptFailed(NamedTuple):
    """An attempt failed: run() raised, or reading the mini-batch did (`items` None: not read)."""

    id: int
    items: int | None
    error: str
    traceback: str


class StorageFailed(NamedTuple):
    """The part could not be written: no attempt can succeed."""

    message: str
    transient: bool


Message = Ready | InitFailed | Ok | AttemptFailed | StorageFailed


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

    plan = Plan.from_header(config.plan)
    reader = Reader(plan, config.scratch)
    out_fs, out_path = filesystem(config.output_uri)
    layout = Layout(out_path, config.run_id, config.output_format)
    append = config.append_row
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        mb = MiniBatch.from_json(message)
        items = None
        try:
            payload, items = reader.read(mb)
            result = module.run(payload)
            returned = result_length(result)
            if returned > items:
                raise ResultError(f"run() returned {returned:,} results for {items:,} items; return at most "
                                  "one element or row per item")
            schema = None
            if append and returned:
                part = encode_part(result, config.output_format)
                write_atomic(out_fs, layout.part(mb.id), part.data)
                schema = schema_to_text(part.schema) if part.schema is not None else None
            conn.send(Ok(mb.id, items, returned, schema))
        except StorageError as e:  # the output cannot take the part: no attempt can succeed
            conn.send(StorageFailed(str(e), e.transient))
        except BaseException as e:  # noqa: BLE001 - a failed attempt, even sys.exit(): the worker goes on
            conn.send(AttemptFailed(mb.id, items, _failure(e, "run()"), traceback.format_exc()))
        finally:
            reader.cleanup(mb)
    if callable(getattr(module, "shutdown", None)):
        module.shutdown()
