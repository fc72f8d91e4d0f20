"""The one place a stream waits: a clock that says what time it is and sleeps until a given time.

Pacing code asks the clock for "now" and sleeps until absolute deadlines computed from timestamps, so errors do
not accumulate and a test can swap in `VirtualClock` to run an hour of media in a second.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds on a monotonic scale, and a way to wait for an absolute time on it."""

    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class MonotonicClock:
    """Real time: `time.monotonic()`, the same scale as the default event loop's `loop.time()`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, t: float) -> None:
        # The loop may fire a timer up to its clock resolution early: sleep again until the deadline has passed.
        while (delay := t - self.now()) > 0:  # noqa: ASYNC110 (a deadline to wait for, not a condition)
            await asyncio.sleep(delay)


class VirtualClock:
    """Time that moves only when a test moves it; sleepers wake in deadline order (ties in arrival order).

    `advance_to` steps through the deadlines it passes one at a time, setting `now()` to each before waking its
    sleepers, and lets the loop run a few turns after each so that woken tasks can react (and sleep again) before
    time moves on.
    """

    def __init__(self, start: float = 0.0, *, settle_turns: int = 8) -> None:
        self._now = start
        self._settle_turns = settle_turns
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    def now(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    @property
    def next_deadline(self) -> float | None:
        live = [deadline for deadline, _, future in self._sleepers if not future.done()]
        return min(live) if live else None

    async def sleep_until(self, t: float) -> None:
        if t <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t, next(self._arrival), future))
        await future

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back (advance by {seconds} s)")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"a clock cannot go back (from {self._now} to {t})")
        await self._settle()
        while self._sleepers and self._sleepers[0][0] <= t:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = deadline
            future.set_result(None)
            await self._settle()
        self._now = t
        await self._settle()

    async def _settle(self) -> None:
        for _ in range(self._settle_turns):
            await asyncio.sleep(0)
