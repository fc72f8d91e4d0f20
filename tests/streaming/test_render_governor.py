"""Degrade before stutter, on a virtual clock: the governor's hysteresis, and a stream drawing every second frame
while it is degraded and every frame again once it recovers."""

from __future__ import annotations

import asyncio

import pytest

from streaming.clock import VirtualClock
from streaming.render_governor import GovernorSettings, RenderGovernor
from streaming.renderer import WindowSpec
from tests.streaming.fake_renderer import FakeRenderer, decode
from tests.streaming.signals import tone
from tests.streaming.stream_harness import StreamHarness

THINNABLE = WindowSpec(frames=4, context=2, lookahead=0.04, onset_frames=2, max_frame_stride=2)


async def test_the_governor_degrades_at_once_and_recovers_only_after_a_calm_hold() -> None:
    clock = VirtualClock()
    governor = RenderGovernor(clock, GovernorSettings(degrade_above=1.0, recover_below=0.8, recover_after=3.0))
    governor.observe(0.95)
    assert governor.frame_stride == 1
    governor.observe(1.2)
    assert governor.frame_stride == 2 and governor.degraded
    governor.observe(0.9)  # between the thresholds: stays degraded however long
    await clock.advance(10.0)
    governor.observe(0.9)
    assert governor.degraded
    governor.observe(0.5)
    await clock.advance(2.0)
    governor.observe(0.85)  # the calm was broken: the hold starts again
    await clock.advance(2.0)
    governor.observe(0.5)
    await clock.advance(2.9)
    governor.observe(0.5)
    assert governor.degraded
    await clock.advance(0.1)
    governor.observe(0.5)
    assert governor.frame_stride == 1 and not governor.degraded


def test_thresholds_that_cannot_give_hysteresis_are_refused() -> None:
    with pytest.raises(ValueError, match="recover_below"):
        GovernorSettings(degrade_above=0.8, recover_below=0.9)


def degrading(clock: VirtualClock) -> RenderGovernor:
    return RenderGovernor(clock, GovernorSettings(recover_after=1.0))


def shown(harness: StreamHarness, first: int = 0) -> list[tuple[int, int]]:
    """(slot index, index of the frame drawn that the slot shows) for every frame from slot `first` on."""
    return [(frame.index, decode(frame.image)[0]) for frame in harness.frames if frame.index >= first]


async def test_a_degraded_stream_draws_every_second_frame_and_shows_each_twice_then_recovers() -> None:
    renderer = FakeRenderer(window=THINNABLE)
    async with StreamHarness(renderer=renderer, governor=degrading) as harness:
        assert harness.governor is not None
        harness.governor.observe(1.5)
        await harness.wait(0.3)
        await harness.play(tone(1.0))
        await harness.wait(0.5)
        degraded_until = len(harness.frames)
        assert harness.stream.degraded
        held = harness.stream.stats.frames_held

        harness.governor.observe(0.2)
        await harness.clock.advance(1.0)
        harness.governor.observe(0.2)
        assert not harness.governor.degraded
        await harness.play(tone(1.0))
        await harness.finish()

    assert harness.indices == list(range(len(harness.frames))), "every slot still gets a frame, in order"
    degraded = shown(harness)[:degraded_until]
    assert all(drawn == index - index % 2 for index, drawn in degraded), "odd slots show the even frame before"
    assert any(frame.speaking for frame in harness.frames[:degraded_until])
    assert held >= degraded_until // 2 - 1
    speech_windows = [call.window for call in renderer.calls if call.window is not None]
    assert any(window.frame_stride == 2 for window in speech_windows)
    recovered = shown(harness, first=len(harness.frames) - 24)
    assert all(drawn == index for index, drawn in recovered), "full rate after the calm hold"
    assert not harness.stream.degraded


async def test_a_renderer_that_cannot_thin_its_windows_keeps_its_full_rate() -> None:
    renderer = FakeRenderer(window=WindowSpec(frames=4, context=2, lookahead=0.04, onset_frames=2))
    async with StreamHarness(renderer=renderer, governor=degrading) as harness:
        assert harness.governor is not None
        harness.governor.observe(5.0)
        await harness.play(tone(1.0))
        await harness.finish()
    assert all(drawn == index for index, drawn in shown(harness))
    assert harness.stream.stats.frames_held == 0 and not harness.stream.degraded


async def test_after_an_interrupt_a_degraded_stream_draws_its_first_frame_at_rest_rather_than_hold_speech() -> None:
    for taken_before in (9, 10):  # the interrupt resumes on an odd slot, then on an even one
        renderer = FakeRenderer(window=THINNABLE)
        async with StreamHarness(renderer=renderer, governor=degrading, consume=False) as harness:
            assert harness.governor is not None
            harness.governor.observe(1.5)
            harness.push(tone(2.0))  # a burst: speech frames are rendered ahead of the clock
            await harness.clock.advance(0.2)
            await harness.until(lambda: harness.stream.queued_frames >= 12)
            taken = [await harness.take() for _ in range(taken_before)]
            assert taken[-1].speaking
            harness.stream.interrupt()
            while not harness.stream.queued_frames:
                await harness.clock.advance(0.02)
                await asyncio.sleep(0.001)
            first_after = await harness.take()
        assert first_after.index == taken_before
        assert decode(first_after.image) == (taken_before, False), "drawn at rest, not the last speech held"
