"""Requests and tokens per minute, held by pacing: each request starts no sooner than its
share of the minute after the one before it, so no window of the minute, however short,
sees a burst over the limit (a bucket that fills while idle would let one through).

Tokens are reserved by an estimate before a request is sent and corrected by what the
server counted (`settle`); a 429's Retry-After holds back every request of the limiter
(`pause`). The clock and the sleep are injectable: tests run it in virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimit:
    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.request_seconds = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.token_seconds = 60.0 / tokens_per_minute if tokens_per_minute else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_request = self.next_tokens = self.paused_until = float("-inf")
        self.last_start = float("-inf")  # when the last request actually started

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for this request's turn; `tokens`: its estimated tokens (prompt and completion)."""
        now = self.clock()
        start = max(now, self.next_request, self.next_tokens, self.paused_until)
        self.next_request = start + self.request_seconds
        self.next_tokens = start + tokens * self.token_seconds
        while start > now:
            await self.sleep(start - now)
            now = self.clock()
            # A 429 met while it waited holds it back too; and where the process was starved and the
            # requests before it woke late, it keeps its distance from the last one that started
            # instead of following it at once (waking late must not make a burst).
            start = max(start, self.paused_until, self.last_start + self.request_seconds)
        self.last_start = now

    def settle(self, estimated: int, counted: int) -> None:
        """The server counted `counted` tokens for a request reserved as `estimated`."""
        self.next_tokens += (counted - estimated) * self.token_seconds

    def pause(self, seconds: float) -> None:
        """No request starts within `seconds` (the server's Retry-After)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)
