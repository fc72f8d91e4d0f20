from __future__ import annotations

import asyncio

import pytest

from streaming.clock import MonotonicClock, VirtualClock


async def test_virtual_time_moves_only_when_the_test_moves_it() -> None:
    clock = VirtualClock(start=5.0)
    sleeper = asyncio.create_task(clock.sleep_until(6.0))
    await asyncio.sleep(0.02)  # real time passes; virtual time does not
    assert clock.now() == 5.0
    assert not sleeper.done()
    await clock.advance(0.5)
    assert not sleeper.done()
    await clock.advance(0.5)
    assert sleeper.done()
    assert clock.now() == 6.0


async def test_sleepers_wake_in_deadline_order_seeing_their_own_deadline_as_now() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.now()))

    tasks = [
        asyncio.create_task(sleeper(name, deadline))
        for name, deadline in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)]
    ]
    await asyncio.sleep(0)
    assert clock.sleepers == 4
    assert clock.next_deadline == 1.0
    await clock.advance_to(10.0)
    await asyncio.gather(*tasks)
    assert woke == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 10.0


async def test_a_woken_task_that_sleeps_again_within_the_advance_is_woken_again() -> None:
    clock = VirtualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        for tick in range(5):
            await clock.sleep_until(tick * 0.1)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.advance_to(1.0)
    await task
    assert ticks == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


async def test_sleeping_until_the_past_returns_at_once_and_cancelled_sleepers_are_skipped() -> None:
    clock = VirtualClock(start=2.0)
    await clock.sleep_until(1.0)
    cancelled = asyncio.create_task(clock.sleep_until(3.0))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert clock.sleepers == 0
    await clock.advance(5.0)
    assert clock.now() == 7.0


async def test_virtual_time_cannot_go_back() -> None:
    clock = VirtualClock(start=1.0)
    with pytest.raises(ValueError, match="cannot go back"):
        await clock.advance_to(0.5)
    with pytest.raises(ValueError, match="cannot go back"):
        await clock.advance(-0.1)


async def test_monotonic_clock_sleeps_until_its_deadline_has_passed() -> None:
    clock = MonotonicClock()
    start = clock.now()
    await clock.sleep_until(start - 1.0)
    deadline = clock.now() + 0.02
    await clock.sleep_until(deadline)
    assert clock.now() >= deadline
