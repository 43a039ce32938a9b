"""Workers forked from a zygote: one process imports what every worker needs, once.

Spawning each worker cost a new interpreter importing our modules (0.15 CPU-s) and, for
tabular input, pandas and pyarrow (0.3-0.5 CPU-s more). A pool instead starts one
zygote (or boots the one that `parallelrun run` started first thing, start_early(), and
that imported our modules meanwhile): a plain `python -c` process with the pool's
`sys.path`, that joins the pool's process group (processes.join_pool), takes the
environment the pool's workers share (thread counts, model paths; never a worker's own
CUDA_VISIBLE_DEVICES), imports the pool's `preload` modules, then forks a worker per
request. The zygote runs no thread of ours; a native library's idle pool (OpenBLAS, when
numpy is preloaded) is sized by the shared thread counts and is fork-safe. Nothing of the user's
code and nothing CUDA-related is imported there: each worker sets its own environment,
then imports the entry script (worker.worker_main).

Pool side, per worker: its pipe (a Connection) and a ForkedProcess, which has what the
pool used of a multiprocessing.Process (pid, sentinel, is_alive, join, kill, exitcode):
the zygote reaps its children as SIGCHLD wakes it and writes each one's exit code to
a status pipe whose read end the pool holds. `running` is shared memory (a memfd, one
int64 a worker slot) where a worker shows the mini-batch in run().

A worker's parent is the zygote, the zygote's the pool's process: PR_SET_PDEATHSIG
chains (the pool's process dies → the zygote → its workers), and all of them are in
the reaper's group.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from multiprocessing.connection import Connection, Pipe, wait
from multiprocessing.reduction import recv_handle, send_handle
from typing import NamedTuple

from .processes import reseed

# Run by `python -c`: the pool's sys.path first (from the repository root, `./operator`
# would otherwise shadow the standard library's), then the zygote.
# Ctrl-C is ignored until the zygote leaves the terminal's process group (serve()).
_BOOT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); sys.path[:] = sys.argv[3:]; "
         "from parallelrun.runner.zygote import serve; serve(int(sys.argv[1]), int(sys.argv[2]))")


class Boot(NamedTuple):
    """The zygote's first message."""

    pgid: int | None
    parent_pid: int
    env: dict[str, str]
    preload: tuple[str, ...]


class ZygoteLost(RuntimeError):
    """The zygote died (killed, out of memory): the pool starts another one."""


class ForkedProcess:
    """A worker forked by the zygote, as the pool sees it. Its sentinel (a status pipe)
    becomes readable when the worker ended: the zygote writes its exit code there, or
    dies (EOF: then it is reported as killed)."""

    def __init__(self, pid: int, status_fd: int):
        self.pid, self.sentinel = pid, status_fd
        self.exitcode: int | None = None

    def _poll(self, timeout: float | None) -> int | None:
        if self.exitcode is None and self.sentinel >= 0 and wait([self.sentinel], timeout):
            data = os.read(self.sentinel, 32)
            self.exitcode = int(data) if data else -signal.SIGKILL
        return self.exitcode

    def is_alive(self) -> bool:
        return self._poll(0) is None

    def join(self, timeout: float | None = None) -> None:
        self._poll(timeout)

    def kill(self) -> None:
        if self.is_alive():  # not reaped yet: the pid is still this worker's
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        if self.sentinel >= 0:
            os.close(self.sentinel)
            self.sentinel = -1


class Zygote:
    """The pool's side. Made at once (the zygote imports meanwhile); fork() asks for a
    worker, forked() waits for it (the answers come in order), cancel() takes a request
    back. `running` holds the mini-batch each slot's worker has in run() (-1: none)."""

    def __init__(self, pgid: int | None, env: dict[str, str], preload: tuple[str, ...], slots: int):
        global _early
        spawned, _early = _early, None
        if spawned is None or spawned[1].poll() is not None:
            if spawned is not None:
                _close_spawned(spawned)
            spawned = _spawn()
        self._control, self._process, fd = spawned
        try:
            os.ftruncate(fd, 8 * max(1, slots))
            self._map = mmap.mmap(fd, 8 * max(1, slots))
        except BaseException:
            _close_spawned(spawned)
            raise
        finally:
            os.close(fd)
        self.running = memoryview(self._map).cast("q")
        for k in range(len(self.running)):
            self.running[k] = -1
        self._control.send(Boot(pgid, os.getpid(), env, preload))
        self.pid = self._process.pid
        self._asked = 0  # fork requests sent; the zygote answers them in order
        self._read = 0  # answers read
        self._answers: dict[int, tuple[Connection, ForkedProcess]] = {}  # read, not yet taken
        self._cancelled: set[int] = set()

    def fork(self, config, slot: int) -> int:
        """Ask for a worker running worker.worker_main(conn, config, slot of `running`); returns its
        ticket for forked(). Raises ZygoteLost."""
        self.running[slot] = -1
        try:
            self._control.send((self._asked + 1, dataclasses.replace(config, parent_pid=self.pid), slot))
        except OSError as e:
            raise ZygoteLost(f"the zygote died (exit code {self._process.poll()})") from e
        self._asked += 1
        return self._asked

    def cancel(self, ticket: int) -> None:
        """Fork request `ticket` is not wanted any more: not forked if it still waits, else killed."""
        if ticket in self._answers:
            conn, process = self._answers.pop(ticket)
            _kill(conn, process)
        elif ticket > self._read:
            self._cancelled.add(ticket)
            try:
                self._control.send(ticket)
            except OSError:  # the zygote died: nothing to fork
                pass

    def answered(self, ticket: int) -> bool:
        """Whether the zygote forked the worker of `ticket` already (forked() returns at once)."""
        try:
            while self._read < ticket and self._control.poll():
                self._read_answer()
        except (EOFError, OSError):
            return True  # lost: forked() says so at once
        return self._read >= ticket

    def forked(self, ticket: int) -> tuple[Connection, ForkedProcess]:
        """The worker of fork request `ticket`, once the zygote forked it; a dead one (its
        pipe closed, its exit code SIGKILL) when the zygote died first."""
        try:
            while self._read < ticket:
                self._read_answer()
        except (EOFError, OSError):
            return _lost()
        return self._answers.pop(ticket) if ticket in self._answers else _lost()

    def _read_answer(self) -> None:
        pid = self._control.recv()
        self._read += 1
        if pid is None:  # cancelled before it was forked
            return
        answer = Connection(recv_handle(self._control)), ForkedProcess(pid, recv_handle(self._control))
        if self._read in self._cancelled:
            _kill(*answer)
        else:
            self._answers[self._read] = answer

    def close(self) -> None:
        """Stop the zygote (its workers are the pool's to stop: those left die with it). Idempotent."""
        self._control.close()
        for conn, process in self._answers.values():
            _kill(conn, process)
        self._answers.clear()
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


_early: tuple[Connection, subprocess.Popen, int] | None = None  # start_early()'s zygote, not yet booted


def start_early() -> None:
    """Start the first pool's zygote now, before the run's spec is read: it imports our
    modules while this process imports its own and plans (`parallelrun run` calls it
    first thing). The first Zygote made in this process boots it; where none is made,
    it exits when this process does."""
    global _early
    if _early is None:
        _early = _spawn()


def _spawn() -> tuple[Connection, subprocess.Popen, int]:
    """A zygote process waiting for its Boot: (our end of its control pipe, the process, the
    memory for its `running` slots, sized at boot)."""
    fd = _shared_memory_fd()
    try:
        control, theirs = Pipe()
        with theirs:
            process = subprocess.Popen([sys.executable, "-c", _BOOT, str(theirs.fileno()), str(fd), *sys.path],
                                       pass_fds=(theirs.fileno(), fd), stdin=subprocess.DEVNULL)
    except BaseException:
        os.close(fd)
        raise
    return control, process, fd


def _close_spawned(spawned: tuple[Connection, subprocess.Popen, int]) -> None:
    control, process, _ = spawned
    control.close()
    if process.poll() is None:
        process.kill()
        process.wait()


def _shared_memory_fd() -> int:
    """A file for the `running` slots: anonymous memory on Linux, an unlinked temporary file elsewhere."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("parallelrun-running")
    fd, path = tempfile.mkstemp(prefix="parallelrun-running-")
    os.unlink(path)
    return fd


def _kill(conn: Connection, process: ForkedProcess) -> None:
    process.kill()
    process.join(5)
    process.close()
    conn.close()


def _lost() -> tuple[Connection, ForkedProcess]:
    """A worker the zygote died before forking: its pipe and its status pipe at EOF."""
    conn, other = Pipe()
    other.close()
    status_r, status_w = os.pipe()
    os.close(status_w)
    return conn, ForkedProcess(-1, status_r)


# -- the zygote process ------------------------------------------------------------


def serve(control_fd: int, running_fd: int) -> None:
    """The zygote's loop: fork a worker per request, report each one's exit code."""
    control = Connection(control_fd)
    import importlib

    from . import worker  # before the Boot: a zygote started early imports while its pool is made
    from .processes import join_pool

    try:
        boot: Boot = control.recv()
    except (EOFError, OSError):  # started early, and no pool came: the process that started it ended
        os._exit(0)
    running = memoryview(mmap.mmap(running_fd, 0)).cast("q")  # sized by the pool before the Boot
    os.close(running_fd)
    join_pool(boot.pgid, boot.parent_pid)  # dies with the pool's process, in the reaper's group
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the workers' as in any Python process
    os.environ.update(boot.env)

    for name in boot.preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - missing or broken: the workers that need it import it (and fail) themselves
            pass
    woken_r, woken_w = os.pipe()  # a byte comes when a worker ended (SIGCHLD)
    os.set_blocking(woken_r, False)
    os.set_blocking(woken_w, False)
    signal.set_wakeup_fd(woken_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, int] = {}  # pid → the write end of its status pipe
    while True:
        for ready in wait([control, woken_r], None):
            if ready is not control:
                _drain(woken_r)
                _reap(children)
                continue
            try:
                for _ticket, config, slot in _requests(control):
                    if config is None:
                        control.send(None)
                        continue
                    inherited = (woken_r, woken_w, *children.values())  # the worker closes them
                    pid, status = _fork(control, config, running, slot, inherited, worker.worker_main)
                    children[pid] = status
            except OSError:  # the pool closed the pipe before an answer went: nobody waits for it
                os._exit(0)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _reap(children: dict[int, int]) -> None:
    """Wait for the workers that ended; write each one's exit code to its status pipe."""
    while children:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status = children.pop(pid, None)
        if status is not None:
            try:
                os.write(status, str(os.waitstatus_to_exitcode(code)).encode())
            except BrokenPipeError:  # the pool no longer waits for it
                pass
            os.close(status)


def _requests(control: Connection) -> list[tuple]:
    """The fork requests waiting, (ticket, config, slot) each; a cancelled one's config is
    None. Exits when the pool closed the pipe, or its process died."""
    requests, cancelled = [], set()
    try:
        while True:
            message = control.recv()
            if isinstance(message, int):
                cancelled.add(message)
            else:
                requests.append(message)
            if not control.poll():
                break
    except (EOFError, OSError):  # closed (a socket closed with our answers unread: ECONNRESET)
        os._exit(0)
    return [(t, None, None) if t in cancelled else (t, c, s) for t, c, s in requests]


class _Slot:
    """A worker's slot of the shared `running` memory, as worker_main uses it (`.value`)."""

    def __init__(self, running: memoryview, slot: int):
        self._running, self._slot = running, slot
        running[slot] = -1

    @property
    def value(self) -> int:
        return self._running[self._slot]

    @value.setter
    def value(self, v: int) -> None:
        self._running[self._slot] = v


def _fork(control: Connection, config, running: memoryview, slot: int, inherited: tuple[int, ...], worker_main):
    """Fork one worker, which closes the zygote's `inherited` files; hand its pipe and
    status pipe to the pool. Returns (pid, the status pipe's write end)."""
    ours, theirs = Pipe()
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            ours.close()
            for fd in (status_r, status_w, *inherited):
                os.close(fd)
            reseed()
            worker_main(theirs, config, _Slot(running, slot))
        except BaseException:  # noqa: BLE001 - as multiprocessing reports a target's exception
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    theirs.close()
    control.send(pid)
    send_handle(control, ours.fileno(), os.getppid())
    send_handle(control, status_r, os.getppid())
    ours.close()
    os.close(status_r)
    return pid, status_w
