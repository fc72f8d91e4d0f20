from __future__ import annotations

from streaming.avatar_stream import StreamSettings
from tests.streaming.fake_renderer import FakeRenderer, decode
from tests.streaming.signals import silence, tone
from tests.streaming.stream_harness import StreamHarness, frames_touching

# Render a whole utterance as soon as it arrives, so that an interrupt finds plenty queued.
AHEAD = StreamSettings(max_render_ahead=10.0, max_queued_frames=200)


async def test_interrupt_empties_every_queue_and_the_next_frames_are_idle_with_a_closed_mouth() -> None:
    async with StreamHarness(AHEAD, consume=False) as harness:
        harness.push(silence(0.3))
        harness.push(tone(2.5))  # a bot's whole utterance, far ahead of the clock (within max_queued_audio)
        taken = [await harness.take() for _ in range(20)]
        assert any(frame.speaking for frame in taken)
        # Wait for the worker to have drawn all it can and gone to sleep on the clock: no render in flight.
        await harness.until(lambda: harness.stream.queued_frames >= 20 and harness.clock.sleepers >= 1)
        windows_before = sum(call.kind == "window" for call in harness.renderer.calls)

        harness.stream.interrupt()

        assert harness.stream.queued_frames == 0
        assert harness.stream.queued_audio == 0.0
        assert harness.stream.stats.frames_discarded >= 20
        assert harness.stream.stats.interrupts == 1
        await harness.clock.advance(2.0)
        after = [await harness.take() for _ in range(24)]
    (session,) = harness.renderer.sessions
    resume, shown = session.resets[0]  # (closing with a render in flight resets it once more)
    assert resume == 20
    assert shown is not None and decode(shown) == (19, taken[-1].speaking), "the session is told what is on screen"
    assert session.closed
    assert [frame.index for frame in after] == list(range(20, 44))
    assert not any(frame.speaking for frame in after)
    assert all(decode(frame.image) == (frame.index, False) for frame in after)
    # Nothing of the interrupted utterance was drawn after the interrupt.
    assert sum(call.kind == "window" for call in harness.renderer.calls) == windows_before


async def test_a_render_in_flight_during_an_interrupt_is_discarded() -> None:
    async with StreamHarness(AHEAD) as harness:
        await harness.play(silence(0.3))
        harness.renderer.gate.clear()
        harness.push(tone(1.0))
        await harness.until(lambda: harness.renderer.calls[-1].kind == "window")  # being drawn, and blocked
        harness.stream.interrupt()
        harness.renderer.gate.set()
        await harness.wait(1.0)
    assert not any(frame.speaking for frame in harness.frames)
    assert harness.indices == list(range(len(harness.indices)))
    assert harness.stream.stats.frames_discarded >= 1


async def test_speech_after_an_interrupt_is_drawn_again() -> None:
    async with StreamHarness() as harness:
        await harness.play(silence(0.3))
        await harness.play(tone(0.5))
        harness.stream.interrupt()
        await harness.play(silence(0.5))
        resumed_from = len(harness.frames)
        await harness.play(tone(0.5))
        await harness.finish()
    assert harness.indices == list(range(len(harness.indices)))
    assert any(frame.speaking for frame in harness.frames[resumed_from:])


async def test_an_interrupt_after_flush_ends_the_stream() -> None:
    async with StreamHarness(AHEAD) as harness:
        harness.push(silence(0.3))
        harness.push(tone(2.0))
        await harness.stream.flush()
        await harness.until(lambda: len(harness.frames) >= 1)
        harness.stream.interrupt()
        await harness.until(lambda: harness.stream_finished)
    assert len(harness.frames) < len(frames_touching(0.0, 2.3))


async def test_interrupting_one_stream_loses_nothing_in_another_sharing_the_renderer() -> None:
    renderer = FakeRenderer()
    async with StreamHarness(AHEAD, renderer) as interrupted, StreamHarness(AHEAD, renderer) as untouched:
        for harness in (interrupted, untouched):
            await harness.play(silence(0.3))
            harness.push(tone(1.5))
        await interrupted.until(lambda: any(frame.speaking for frame in interrupted.frames))
        interrupted.stream.interrupt()
        await untouched.wait(2.0)  # to 2.3 s: silence is filled in up to 2.24 s
        await untouched.finish()
    speaking = [frame.index for frame in untouched.frames if frame.speaking]
    assert speaking == frames_touching(0.3, 1.8 + 0.24)  # the whole tone, and the hangover after it
    assert untouched.indices == frames_touching(0.0, 2.24)
    assert untouched.stream.stats.frames_discarded == 0
    assert interrupted.stream.stats.interrupts == 1
