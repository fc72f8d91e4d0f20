"""One real-time run: speech in, paced frames out, on the real clock, for about a second.

Timing on a loaded machine varies, so this checks order and coverage, never how late anything was.
"""

from __future__ import annotations

import asyncio

from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import MonotonicClock
from streaming.frames import SAMPLE_RATE, VideoFrame
from streaming.pacer import FramePacer
from tests.streaming.fake_renderer import FakeAvatar, FakeRenderer, decode
from tests.streaming.signals import Speech, chunks
from tests.streaming.stream_harness import frames_touching

DURATION = 1.0


async def test_speech_through_stream_and_pacer_in_real_time(speech: Speech) -> None:
    clock = MonotonicClock()
    renderer = FakeRenderer()
    stream = AvatarStream(renderer, FakeAvatar(), StreamSettings(), clock)  # the real webrtcvad
    pacer = FramePacer(clock, stream.fps, playout_delay=stream.pipeline_delay + 0.05)
    rendered: list[VideoFrame] = []
    shown: list[VideoFrame] = []

    async def microphone() -> None:
        """Each 20 ms chunk is pushed when the clock reaches its end, as it would arrive from WebRTC."""
        for chunk in chunks(speech.samples[: int(DURATION * SAMPLE_RATE)]):
            await clock.sleep_until(stream.origin + chunk.pts + chunk.duration)
            stream.push_audio(chunk)
        await stream.flush()

    async def feed_pacer() -> None:
        async for frame in stream:
            rendered.append(frame)
            pacer.push(frame)

    async def screen() -> None:
        while not (feeding.done() and pacer.buffered == 0):
            shown.append(await pacer.next_frame())

    await stream.start()
    pacer.anchor(0.0, stream.origin)
    feeding = asyncio.create_task(feed_pacer())
    try:
        await asyncio.wait_for(asyncio.gather(microphone(), feeding, screen()), timeout=30)
    finally:
        await stream.aclose()

    assert [frame.index for frame in rendered] == frames_touching(0.0, DURATION)
    assert all(decode(frame.image) == (frame.index, frame.speaking) for frame in rendered)
    assert any(frame.speaking for frame in rendered)  # espeak's "Hello" starts within the first second
    assert stream.stats.frames_skipped == 0

    shown_indices = [frame.index for frame in shown]
    assert shown_indices == sorted(shown_indices)
    assert shown_indices[-1] == rendered[-1].index
    stats = pacer.stats
    assert stats.emitted + stats.repeated == len(shown)
    assert stats.emitted + stats.dropped == len(rendered)
