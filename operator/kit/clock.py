"""The controllers' clock: the wall clock, or a test's with the same two methods."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

RESYNC_SECONDS = 60  # a look without any event, in case one was missed


class Clock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        """Until `when` (None: RESYNC_SECONDS) or `wake` is set, whichever is first."""
        seconds = RESYNC_SECONDS if when is None else min(RESYNC_SECONDS, (when - self.now()).total_seconds())
        if seconds > 0:
            try:
                await asyncio.wait_for(wake.wait(), seconds)
            except asyncio.TimeoutError:
                pass
