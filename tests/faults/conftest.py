"""Fixtures for fault tests: watching processes through /proc, commands in sessions of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...); None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for its parent to reap it does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


class Command:
    """A command of ours in a session of its own (as a shell starts a job: its own process
    group, so os.killpg(p.pid, SIGINT) is what Ctrl-C does), output to files."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None):
        self.out, self.err = cwd / f"stdout-{time.monotonic_ns()}", cwd / f"stderr-{time.monotonic_ns()}"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=out, stderr=err,
                                            env={**os.environ, **(env or {})}, start_new_session=True)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
            raise AssertionError(f"still running after {timeout} s; stderr:\n{self.stderr}") from None

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()


@pytest.fixture
def commands():
    """Start commands with `commands(args, cwd, env)`; any left running are killed at the end."""
    started: list[Command] = []

    def start(args, cwd, env=None) -> Command:
        started.append(Command(args, cwd, env))
        return started[-1]

    yield start
    for command in started:
        command.kill()


class Pids:
    """What the scoring scripts of these tests report through files in one folder
    (PIDS_DIR): `init-<pid>` from init(), `hang-<worker>-<child>-<pgid>` from a run()
    that started a child process and hangs, `child-<pid>` for any other child."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()

    def inits(self) -> list[int]:
        return [int(p.name.split("-")[1]) for p in self.root.glob("init-*")]

    def hangs(self) -> list[tuple[int, int, int]]:
        return [tuple(int(x) for x in p.name.split("-")[1:]) for p in self.root.glob("hang-*")]

    def children(self) -> list[int]:
        return [int(p.name.split("-")[1]) for p in self.root.glob("child-*")]

    def all(self) -> set[int]:
        return set(self.inits()) | set(self.children()) | {pid for hang in self.hangs() for pid in hang[:2]}

    def left(self) -> list[int]:
        """Processes of the run still alive: workers, their children, members of the pool's group."""
        pids = {pid for pid in self.all() if alive(pid)}
        for pgid in {hang[2] for hang in self.hangs()} - {os.getpgrp()}:
            pids.update(group_members(pgid))
        return sorted(pids)


@pytest.fixture
def pids(tmp_path, monkeypatch):
    watched = Pids(tmp_path / "pids")
    monkeypatch.setenv("PIDS_DIR", str(watched.root))
    yield watched
    for pid in watched.left():  # whatever a failed test leaked
        try:
            os.kill(pid, 9)
        except OSError:
            pass
