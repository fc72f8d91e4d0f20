"""Rendering a whole recording through the live pipeline, as fast as the renderer goes.

The recording is fed to an `AvatarStream` on a `VirtualClock` that follows the frames handed out: audio is always
pushed a little ahead of the clock, so none of it is ever overdue and none is dropped, and the clock moves on only
as frames are taken. The result is frame for frame what a live viewer of the same audio would have seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import VirtualClock
from streaming.frames import SAMPLE_RATE, AudioChunk, FloatAudio, VideoFrame
from streaming.renderer import AvatarT, Renderer

AUDIO_LEAD = 1.0
"""Seconds of audio pushed ahead of the clock: more than any window and look-ahead, less than the stream's
`max_queued_audio`, so the stream never runs dry and never drops audio."""

PUSH_SECONDS = 0.1


async def stream_offline(
    renderer: Renderer[AvatarT], avatar: AvatarT, speech: FloatAudio, settings: StreamSettings | None = None
) -> AsyncIterator[VideoFrame]:
    """Yield every frame for `speech` (16 kHz mono float32), in order, then stop."""
    clock = VirtualClock()
    stream = AvatarStream(renderer, avatar, settings, clock)
    await stream.start()
    pushed = 0

    async def push_until(media_time: float) -> None:
        nonlocal pushed
        target = min(len(speech), round(media_time * SAMPLE_RATE))
        while pushed < target:
            end = min(target, pushed + round(PUSH_SECONDS * SAMPLE_RATE))
            stream.push_audio(AudioChunk(samples=speech[pushed:end], pts=pushed / SAMPLE_RATE))
            pushed = end
        if pushed == len(speech):
            await stream.flush()

    try:
        await push_until(AUDIO_LEAD)
        async for frame in stream:
            yield frame
            media_time = (frame.index + 1) / stream.fps
            await push_until(media_time + AUDIO_LEAD)
            await clock.advance_to(stream.origin + media_time)
    finally:
        await stream.aclose()
