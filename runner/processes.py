"""No process outlives its run: workers, and whatever the user's code starts, die with the pool.

A worker runs the user's code, which may start processes of its own
(`subprocess.Popen(["sleep", "1000"])`). None of them may outlive the pool, whether it
is closed in order, by Ctrl-C or SIGTERM, or because the process that owns it was
SIGKILLed (`kill -9`, the OOM killer), when no code of ours runs any more. So:

- Each pool has a *reaper* (ProcessGroup): a tiny process, leader of a process group of
  its own, holding on its stdin the read end of a pipe whose only write end the pool's
  process holds. The pool's zygote (zygote.py) and every worker it forks join that
  group first thing (join_pool), so the processes the user's code starts inherit it.
  When the reaper's stdin hits EOF — the pool closed it, or the pool's process ended in
  any way, SIGKILL included, since the kernel closes a dead process's files — it
  SIGKILLs its whole group, itself included.
- The zygote and each worker also ask the kernel for SIGKILL when their parent dies
  (Linux PR_SET_PDEATHSIG), should the reaper be gone: the pool's process → the zygote
  → its workers.

Being in a group of their own, the workers no longer receive the terminal's Ctrl-C
(SIGINT goes to the foreground group): the main process gets it and stops the pool.

Limits: a process that leaves the group on purpose (setsid, setpgid: a daemon) is not
followed. PR_SET_PDEATHSIG fires when the *thread* that started the process ends, so a
pool starts its zygote (and a new one should it die) from one thread that outlives it
(ShardRunner does; the zygote has a single thread). The processes a worker started
stay until the pool closes when that worker alone is killed (a run() timeout).
"""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import os
import signal
import subprocess
import sys
from typing import Any

# The reaper, run with `python -I -S -c`: standard library only, nothing from the
# current directory (from the repository root, ./operator would shadow the stdlib's).
_REAPER = """\
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
try:
    while os.read(0, 4096):
        pass
finally:
    os.killpg(0, signal.SIGKILL)
"""

# The reaper leads a new group from before its exec: the group exists once Popen returned.
_NEW_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


def in_group(pgid: int) -> dict[str, Any]:
    """Popen's arguments that start the process in the group `pgid`: Popen's `process_group`
    from Python 3.11, a preexec_fn before (3.10 has no `process_group`)."""
    if sys.version_info >= (3, 11):
        return {"process_group": pgid}
    return {"preexec_fn": functools.partial(os.setpgid, 0, pgid)}


class ProcessGroup:
    """A new process group, led by a reaper that SIGKILLs the group when this process
    closes it or dies. Workers join it with join_pool(group.pgid, ...)."""

    def __init__(self):
        self._reaper = subprocess.Popen([sys.executable, "-I", "-S", "-c", _REAPER], stdin=subprocess.PIPE,
                                        close_fds=True, **_NEW_GROUP)
        self.pgid = self._reaper.pid

    def close(self, timeout: float = 5.0) -> None:
        """SIGKILL every process of the group (the workers and all they started). Idempotent."""
        stdin = self._reaper.stdin
        assert stdin is not None  # opened as a pipe
        if not stdin.closed:
            stdin.close()
        try:
            self._reaper.wait(timeout)
        except subprocess.TimeoutExpired:
            self._reaper.kill()
            self._reaper.wait()


PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def join_pool(pgid: int | None, parent_pid: int | None) -> None:
    """First thing in a worker: die with the parent, join the pool's process group, leave
    the terminal alone, and write the stacks of all threads to stderr (the worker's log)
    on SIGUSR1, which the pool sends to a worker that hangs before killing it."""
    if parent_pid is not None:
        _die_with_parent(signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before the signal was armed
            os._exit(1)
    if pgid is not None:
        try:
            os.setpgid(0, pgid)
        except OSError:  # the group is gone: the pool was closed or its process died
            os._exit(1)
    # A background group that reads the terminal is stopped (SIGTTIN); nothing should.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    faulthandler.register(signal.SIGUSR1, all_threads=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception: it stops a local run as Ctrl-C does, with exit code 143."""

    exit_code = 143


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler: `signal.signal(signal.SIGTERM, raise_terminated)`."""
    raise Terminated()


def reseed() -> None:
    """A forked process (a worker, a preprocess process) draws its own random numbers: numpy's
    global generator, seeded where the zygote imported it, would otherwise repeat in every
    one (the random module reseeds itself after a fork)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
