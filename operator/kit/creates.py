"""Creates that go first: the runs schedules start when many fire at once."""

from __future__ import annotations

import asyncio
import collections
import threading

import kopf

from .kube import KubeApi


class CreatesFirst:
    """The runs' creates of one operator go first: through a client of their own (`api`, logged in
    with the operator's by `connect`) on an event loop of their own, in a thread. Neither the
    operator's other calls nor kopf's reaction to a thousand new runs (on the operator's loop) queue
    ahead of them; the thread, waiting on the network most of the time, gets the interpreter
    within the switch interval (5 ms) of an answer arriving. Status writes and the new runs'
    reconcilers `wait` until no create is under way (up to `patience`), so that when a thousand
    schedules fire at once their runs are created first. At most `concurrency` creates are in
    flight at once; the rest queue on the thread (an API server serves a few connections as fast
    as many)."""

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
        try:
            if self._loop is None:  # not logged in: the client says so
                return await self.api.create(url_path, body)
            return await self._on_own_loop(self._create(url_path, body))
        finally:
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
