"""Creates that go first: the runs schedules start when many fire at once."""

from __future__ import annotations

import asyncio
import collections
import sys
import threading

import kopf

from .kube import KubeApi

# Python's default is 5 ms: with kopf's loop busy reacting to the new runs, the creates thread then
# got about 430 creates a second through (bench_schedules.py), while the emulator serves 1,700.
SWITCH_INTERVAL = 0.0005


class _Prompt:
    """The interpreter switches threads every SWITCH_INTERVAL while any create is under way, in any
    CreatesFirst of the process; then back to what it was."""

    under_way = 0
    normal = SWITCH_INTERVAL

    @classmethod
    def begin(cls) -> None:
        if not cls.under_way:
            cls.normal = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL)
        cls.under_way += 1

    @classmethod
    def end(cls) -> None:
        cls.under_way -= 1
        if not cls.under_way:
            sys.setswitchinterval(cls.normal)


class CreatesFirst:
    """The runs' creates of one operator go first: through a client of their own (`api`, logged in
    with the operator's by `connect`) on an event loop of their own, in a thread. Neither the
    operator's other calls nor kopf's reaction to a thousand new runs (on the operator's loop) queue
    ahead of them. The thread waits on the network most of the time, and while a create is under
    way the interpreter hands it over from the busy loop within SWITCH_INTERVAL of an answer
    arriving (`_Prompt`). Status writes and the new runs' reconcilers `wait` until no create is
    under way (up to `patience`), so that when a thousand schedules fire at once their runs are
    created first. At most `concurrency` creates are in flight at once; the rest queue on the
    thread (an API server serves a few connections as fast as many)."""

    def __init__(self, patience: float = 10.0, concurrency: int = 16):
        self.api = KubeApi()
        self.pending, self.patience, self.concurrency = 0, patience, concurrency
        self.waiting: collections.Counter[str] = collections.Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None  # on the thread's loop

    async def connect(self, info: kopf.ConnectionInfo) -> None:
        """Log the client in (again: kopf logs in anew when the credentials expire)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="schedule-creates", daemon=True)
            self._thread.start()
            self._slots = asyncio.Semaphore(self.concurrency)
        await self._on_own_loop(self.api.connect(info))

    async def close(self) -> None:
        if self._loop is None:
            return
        await self._on_own_loop(self.api.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None  # started with the loop
        await asyncio.to_thread(self._thread.join)
        self._loop.close()
        self._loop = self._thread = None

    def _on_own_loop(self, coroutine) -> asyncio.Future:
        assert self._loop is not None, "connect() starts it"
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    async def create(self, url_path: str, body: dict) -> dict:
        self.pending += 1
        self._idle.clear()
        _Prompt.begin()
        try:
            if self._loop is None:  # not logged in: the client says so
                return await self.api.create(url_path, body)
            return await self._on_own_loop(self._create(url_path, body))
        finally:
            _Prompt.end()
            self.pending -= 1
            if not self.pending:
                self._idle.set()

    async def _create(self, url_path: str, body: dict) -> dict:
        assert self._slots is not None  # made with the loop this runs on
        async with self._slots:
            return await self.api.create(url_path, body)

    async def wait(self, who: str = "") -> None:
        """Until no create is under way (`waiting` counts who waits meanwhile, by name)."""
        if self._idle.is_set():
            return
        self.waiting[who] += 1
        try:
            await asyncio.wait_for(self._idle.wait(), self.patience)
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiting[who] -= 1
