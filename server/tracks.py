"""The two tracks a peer receives from a session: the avatar's video, one frame per tick of the session's clock,
and the session's voice (the caller's echoed back, or a bot's).

Both are stamped and sent on the session's one media timeline: the frame depicting media time `t` and the voice
from `t` both leave at `origin + t + playout_delay` on the clock. WebRTC's sender reports tie each track's RTP
timestamps to the wall clock at send time, so a browser playing both keeps them lip-synced.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.playout import Tick
from streaming.clock import Clock
from streaming.frames import SAMPLE_RATE, AudioChunk

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = Fraction(1, SAMPLE_RATE)
PACKET_SAMPLES = SAMPLE_RATE // 50
"""20 ms: the voice is sent in pieces no longer than one Opus packet."""


class AvatarVideoTrack(MediaStreamTrack):
    """Sends the session's ticks, each stamped with the media time of the slot it fills. An encoder that falls
    behind gets the newest tick: one it missed is never sent late."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._tick: Tick | None = None
        self._arrived = asyncio.Event()

    def show(self, tick: Tick) -> None:
        self._tick = tick
        self._arrived.set()

    async def recv(self) -> av.VideoFrame:
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
        return output

    def stop(self) -> None:
        super().stop()
        self._arrived.set()


class EchoAudioTrack(MediaStreamTrack):
    """Sends the session's voice, each chunk at `send_time(chunk media time)` on `clock`.

    At most `max_buffered` seconds wait; older audio is dropped, so a stalled sender cannot grow the queue. A chunk
    whose send time passed more than `max_late` seconds ago (a peer that connected after it was queued) is dropped
    too: played that late it would only put the voice behind the video.
    """

    kind = "audio"

    def __init__(
        self, clock: Clock, send_time: Callable[[float], float], max_buffered: float = 2.0, max_late: float = 0.2
    ) -> None:
        super().__init__()
        self._clock = clock
        self._send_time = send_time
        self._max_buffered = max_buffered
        self._max_late = max_late
        self._queue: deque[tuple[float, AudioChunk]] = deque()
        self._buffered = 0.0
        self._arrived = asyncio.Event()

    def push(self, media_time: float, chunk: AudioChunk) -> None:
        """Queue `chunk`, whose first sample sits at `media_time` on the session timeline, in pieces of at most
        `PACKET_SAMPLES` (a bot's chunk can hold seconds: sent as one frame, the Opus packets cut from it would all
        carry one RTP timestamp)."""
        for offset in range(0, len(chunk.samples), PACKET_SAMPLES):
            piece = AudioChunk(chunk.samples[offset : offset + PACKET_SAMPLES], chunk.pts + offset / SAMPLE_RATE)
            self._queue.append((media_time + offset / SAMPLE_RATE, piece))
        self._buffered += chunk.duration
        while self._buffered > self._max_buffered:
            _, dropped = self._queue.popleft()
            self._buffered -= dropped.duration
        self._arrived.set()

    def clear(self) -> None:
        """Drop every chunk not yet sent (an interrupt)."""
        self._queue.clear()
        self._buffered = 0.0

    async def recv(self) -> av.AudioFrame:
        while True:
            while not self._queue:
                if self.readyState != "live":
                    raise MediaStreamError
                self._arrived.clear()
                await self._arrived.wait()
            media_time, chunk = self._queue.popleft()
            self._buffered -= chunk.duration
            if self._send_time(media_time) >= self._clock.now() - self._max_late:
                break
        await self._clock.sleep_until(self._send_time(media_time))
        if self.readyState != "live":
            raise MediaStreamError
        pcm = np.clip(np.round(chunk.samples * 32767.0), -32768, 32767).astype(np.int16)
        output = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        output.sample_rate = SAMPLE_RATE
        output.pts = round(media_time * SAMPLE_RATE)
        output.time_base = AUDIO_TIME_BASE
        return output

    def stop(self) -> None:
        super().stop()
        self._arrived.set()


class PeerOutput:
    """What one peer connection receives from a session: the avatar's video and, with `voice`, the voice."""

    def __init__(
        self, clock: Clock, send_time: Callable[[float], float], *, voice: bool, max_buffered_voice: float = 2.0
    ) -> None:
        self.video = AvatarVideoTrack()
        self.voice = EchoAudioTrack(clock, send_time, max_buffered_voice) if voice else None

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
