from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streaming.clock import VirtualClock
from streaming.frames import VideoFrame
from streaming.pacer import FramePacer

FPS = 24.0
TICK = 1 / FPS
IMAGE = np.zeros((2, 2, 3), dtype=np.uint8)


def frame(index: int) -> VideoFrame:
    return VideoFrame(image=IMAGE, index=index, pts=index / FPS)


def anchored_pacer(playout_delay: float = 0.0, *, max_buffered: int = 256) -> tuple[VirtualClock, FramePacer]:
    """A pacer on a virtual clock at 0, with media time 0 anchored there."""
    clock = VirtualClock()
    pacer = FramePacer(clock, FPS, playout_delay=playout_delay, max_buffered=max_buffered)
    pacer.anchor(0.0, 0.0)
    return clock, pacer


async def tick(clock: VirtualClock, pacer: FramePacer) -> VideoFrame:
    """Ask for the next frame and move virtual time on until it comes."""
    pending = asyncio.create_task(pacer.next_frame())
    while not pending.done():
        deadline = clock.next_deadline
        await clock.advance_to(deadline if deadline is not None else clock.now())
    return pending.result()


async def test_frames_on_time_are_each_shown_once_when_due() -> None:
    clock, pacer = anchored_pacer(playout_delay=0.1)
    for index in range(48):
        pacer.push(frame(index))
    shown = []
    for _ in range(40):
        shown_frame = await tick(clock, pacer)
        due = pacer.due_media_time(clock.now())
        assert due is not None
        # The newest frame whose audio is playing: not early, and not one that a newer due frame replaces.
        assert shown_frame.pts <= due + 1e-9 < shown_frame.pts + TICK
        shown.append(shown_frame.index)
    # Frame 0 is due 0.1 s after the anchor; until then there is nothing to show, so the first call waits.
    assert shown == list(range(40))
    assert (pacer.stats.emitted, pacer.stats.repeated, pacer.stats.dropped) == (40, 0, 0)


async def test_when_rendering_falls_behind_stale_frames_are_dropped_for_the_newest_due() -> None:
    clock, pacer = anchored_pacer()
    pacer.push(frame(0))
    assert (await tick(clock, pacer)).index == 0
    # Rendering stalls for 10 ticks, then catches up in one burst.
    shown = [await tick(clock, pacer) for _ in range(10)]
    assert [shown_frame.index for shown_frame in shown] == [0] * 10
    for index in range(1, 16):
        pacer.push(frame(index))
    caught_up = await tick(clock, pacer)
    assert caught_up.index == 11  # the tick at 11/24 s shows frame 11; frames 1..10 are too late to matter
    assert pacer.stats.dropped == 10
    assert pacer.stats.repeated == 10
    assert (await tick(clock, pacer)).index == 12


async def test_when_rendering_is_ahead_or_stalled_the_last_frame_is_repeated() -> None:
    clock, pacer = anchored_pacer()
    pacer.push(frame(0))
    pacer.push(frame(30))  # far ahead of its time
    shown = [await tick(clock, pacer) for _ in range(31)]
    assert [shown_frame.index for shown_frame in shown] == [0] * 30 + [30]
    assert pacer.stats.repeated == 29
    assert pacer.stats.dropped == 0


async def test_a_frame_arriving_after_a_newer_one_was_shown_is_dropped() -> None:
    clock, pacer = anchored_pacer()
    pacer.push(frame(1))
    await clock.advance(2 * TICK)
    assert (await pacer.next_frame()).index == 1
    pacer.push(frame(0))
    assert pacer.buffered == 0
    assert pacer.stats.dropped == 1


async def test_no_drift_over_a_simulated_hour_with_jittery_rendering() -> None:
    clock = VirtualClock(settle_turns=1)
    playout = 0.25
    pacer = FramePacer(clock, FPS, playout_delay=playout)
    pacer.anchor(0.0, 0.0)
    rng = np.random.default_rng(0)
    # Frame k is ready somewhere between its media time and its media time plus 0.2 s (under the playout delay).
    ready_at = np.arange(24 * 3600) / FPS + rng.uniform(0.0, 0.2, 24 * 3600)
    order = np.argsort(ready_at, kind="stable")
    next_ready = 0
    first_due_tick = int(np.ceil(playout * FPS))  # start ticking once frame 0 is due, so no call has to wait
    for tick_index in range(first_due_tick, 24 * 3600):
        now = tick_index * TICK
        while next_ready < len(order) and ready_at[order[next_ready]] <= now:
            pacer.push(frame(int(order[next_ready])))
            next_ready += 1
        await clock.advance_to(now)
        shown = await tick(clock, pacer)
        assert clock.now() == pytest.approx(now, abs=1e-9)  # the pacer's tick grid has not drifted from the wall
        assert shown.index == tick_index - first_due_tick, f"tick {tick_index} at {now:.3f} s"
    # Every tick showed the frame whose audio was playing: nothing dropped, nothing repeated, nothing drifted.
    assert pacer.stats.repeated == 0
    assert pacer.stats.dropped == 0


async def test_clear_drops_what_is_queued_and_keeps_the_frame_on_screen() -> None:
    clock, pacer = anchored_pacer()
    for index in range(10):
        pacer.push(frame(index))
    assert (await tick(clock, pacer)).index == 0
    pacer.clear()
    assert pacer.buffered == 0
    assert pacer.stats.dropped == 9
    assert (await tick(clock, pacer)).index == 0
    assert pacer.stats.repeated == 1
    pacer.push(frame(2))
    assert (await tick(clock, pacer)).index == 2


async def test_without_an_anchor_the_first_frame_anchors_to_now() -> None:
    clock = VirtualClock(start=100.0)
    pacer = FramePacer(clock, FPS, playout_delay=0.1)
    pacer.push(frame(48))  # media time 2.0 s
    assert pacer.due_media_time(100.1) == pytest.approx(2.0)
    shown = await tick(clock, pacer)
    assert shown.index == 48
    assert clock.now() == pytest.approx(100.1, abs=TICK)


async def test_ticks_fall_on_the_frame_boundaries_of_the_anchor_however_the_first_call_is_timed() -> None:
    clock, pacer = anchored_pacer(playout_delay=0.1)
    for index in range(5):
        pacer.push(frame(index))
    await clock.advance_to(0.1 + 1.4 * TICK)  # the consumer first asks between two frames' due times
    shown, times = [], []
    for _ in range(3):
        shown.append((await tick(clock, pacer)).index)
        times.append(clock.now())
    # Frames 0 and 1 are overdue and dropped; frame 2 leaves the moment it falls due, each next frame a tick later.
    assert shown == [2, 3, 4]
    assert times == pytest.approx([0.1 + k * TICK for k in (2, 3, 4)], abs=1e-9)
    assert pacer.stats.dropped == 2


async def test_a_late_consumer_skips_the_ticks_it_missed_instead_of_bursting() -> None:
    clock, pacer = anchored_pacer()
    for index in range(100):
        pacer.push(frame(index))
    assert (await tick(clock, pacer)).index == 0
    await clock.advance(10.5 * TICK)
    late = await tick(clock, pacer)
    assert late.index == 10
    assert pacer.stats.late_ticks == 9
    assert clock.now() == pytest.approx(10.5 * TICK)  # the tick at 10/24 s had passed: no sleep
    after = await tick(clock, pacer)
    assert after.index == 11
    assert clock.now() == pytest.approx(11 * TICK)


async def test_the_buffer_is_bounded() -> None:
    _, pacer = anchored_pacer(max_buffered=5)
    for index in range(20):
        pacer.push(frame(index))
    assert pacer.buffered == 5
    assert pacer.stats.dropped == 15


def test_bad_settings_are_refused() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="fps"):
        FramePacer(clock, 0.0, playout_delay=0.1)
    with pytest.raises(ValueError, match="playout_delay"):
        FramePacer(clock, FPS, playout_delay=-1.0)
