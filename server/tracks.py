"""The two tracks a peer receives from a session: the avatar's video, one frame per tick of the session's clock,
and the session's voice (the caller's echoed back, or a bot's).

Both are stamped and sent on the session's one media timeline: the frame depicting media time `t` and the voice
from `t` both leave at `origin + t + playout_delay` on the clock. WebRTC's sender reports tie each track's RTP
timestamps to the wall clock at send time, so a browser playing both keeps them lip-synced.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.playout import Tick
from server.voice_timeline import VoiceTimeline
from streaming.clock import Clock
from streaming.frames import SAMPLE_RATE, AudioChunk

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = Fraction(1, SAMPLE_RATE)
MAX_ENCODE_DELAY = 0.2
"""Seconds of encoding the voice is ever held back for; a longer gap is a stalled sender, not an encoder."""
ENCODE_DELAY_SMOOTHING = 0.1
FRAMES_PER_SECOND = 50
"""The voice goes out in 20 ms frames, one Opus packet each."""


class AvatarVideoTrack(MediaStreamTrack):
    """Sends the session's ticks, each stamped with the media time of the slot it fills. An encoder that falls
    behind gets the newest tick: one it missed is never sent late.

    The sender encodes each frame after taking it and asks for the next once the frame is on the wire, so the time
    between handing a frame over and the next request is what encoding and sending took: `encode_delay` follows it,
    for the voice to wait as long."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._tick: Tick | None = None
        self._arrived = asyncio.Event()
        self._handed_over: float | None = None
        self.encode_delay = 0.0

    def show(self, tick: Tick) -> None:
        self._tick = tick
        self._arrived.set()

    async def recv(self) -> av.VideoFrame:
        loop = asyncio.get_running_loop()
        if self._handed_over is not None:
            took = min(loop.time() - self._handed_over, MAX_ENCODE_DELAY)
            self.encode_delay += ENCODE_DELAY_SMOOTHING * (took - self.encode_delay)
        while self._tick is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._arrived.clear()
            await self._arrived.wait()
        if self.readyState != "live":
            raise MediaStreamError
        tick, self._tick = self._tick, None
        output = av.VideoFrame.from_ndarray(tick.frame.image, format="rgb24")
        output.pts = round(tick.media_time * VIDEO_CLOCK_RATE)
        output.time_base = VIDEO_TIME_BASE
        self._handed_over = loop.time()
        return output

    def stop(self) -> None:
        super().stop()
        self._arrived.set()


class EchoAudioTrack(MediaStreamTrack):
    """Sends the session's voice as one continuous 16 kHz stream of 20 ms frames, each at `send_time(its media
    time)` on `clock`: the voice where there is some, silence between.

    Continuous because aiortc's Opus encoder numbers packets by the samples it was given, not by their timestamps:
    a voice with gaps would reach the peer with the gaps closed up, running ahead of the video. The stream starts
    at the frame due when the peer first asks; a peer that falls more than `max_late` behind skips to what is due.
    At most `max_buffered` seconds of voice wait ahead of what has been sent; older voice is dropped.
    """

    kind = "audio"

    def __init__(
        self, clock: Clock, send_time: Callable[[float], float], max_buffered: float = 2.0, max_late: float = 0.2
    ) -> None:
        super().__init__()
        self._clock = clock
        self._send_time = send_time
        self._max_buffered = max_buffered
        self._late_frames = round(max_late * FRAMES_PER_SECOND)
        self._voice = VoiceTimeline(SAMPLE_RATE, FRAMES_PER_SECOND)
        self._next_frame: int | None = None

    def push(self, media_time: float, chunk: AudioChunk) -> None:
        """Add voice whose first sample sits at `media_time` on the session timeline."""
        self._voice.place(media_time, np.clip(np.round(chunk.samples * 32767.0), -32768, 32767).astype(np.int16))
        self._voice.forget_before(self._voice.end - self._max_buffered)

    def clear(self) -> None:
        """Drop all the voice not yet sent (an interrupt)."""
        self._voice.clear()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        due = max(0, math.floor((self._clock.now() - self._send_time(0.0)) * FRAMES_PER_SECOND))
        if self._next_frame is None or self._next_frame < due - self._late_frames:
            self._next_frame = due
        number = self._next_frame
        self._next_frame += 1
        await self._clock.sleep_until(self._send_time(number / FRAMES_PER_SECOND))
        if self.readyState != "live":
            raise MediaStreamError
        output = av.AudioFrame.from_ndarray(self._voice.take(number).reshape(1, -1), format="s16", layout="mono")
        output.sample_rate = SAMPLE_RATE
        output.pts = number * SAMPLE_RATE // FRAMES_PER_SECOND
        output.time_base = AUDIO_TIME_BASE
        return output


class PeerOutput:
    """What one peer connection receives from a session: the avatar's video and, with `voice`, the voice."""

    def __init__(
        self, clock: Clock, send_time: Callable[[float], float], *, voice: bool, max_buffered_voice: float = 2.0
    ) -> None:
        self.video = AvatarVideoTrack()
        self.voice = EchoAudioTrack(clock, self._voice_send_time, max_buffered_voice) if voice else None
        self._send_time = send_time

    def _voice_send_time(self, media_time: float) -> float:
        # The frame of this moment leaves once encoded; the voice waits as long, so the two arrive together.
        return self._send_time(media_time) + self.video.encode_delay

    def on_tick(self, tick: Tick) -> None:
        self.video.show(tick)

    def on_audio(self, media_time: float, chunk: AudioChunk) -> None:
        if self.voice is not None:
            self.voice.push(media_time, chunk)

    def on_interrupt(self) -> None:
        if self.voice is not None:
            self.voice.clear()

    async def aclose(self) -> None:
        self.video.stop()
        if self.voice is not None:
            self.voice.stop()
