"""The two tracks a session sends: the avatar's video, paced by a `FramePacer`, and the caller's voice echoed back.

Both are stamped and sent on the session's one media timeline: the frame depicting media time `t` and the echoed
audio from `t` both leave at `origin + t + playout_delay` on the clock. WebRTC's sender reports tie each
track's RTP timestamps to the wall clock at send time, so a browser playing both keeps them lip-synced.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.clock import Clock
from streaming.frames import SAMPLE_RATE, AudioChunk, VideoFrame
from streaming.pacer import FramePacer

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = Fraction(1, SAMPLE_RATE)


class AvatarVideoTrack(MediaStreamTrack):
    """Sends one pacer tick per frame. `on_sent(frame, repeated)` is told about every frame handed to the encoder."""

    kind = "video"

    def __init__(self, pacer: FramePacer, on_sent: Callable[[VideoFrame, bool], None]) -> None:
        super().__init__()
        self._pacer = pacer
        self._on_sent = on_sent
        self._last_index: int | None = None
        self._last_pts = -1

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._pacer.next_frame()
        repeated = frame.index == self._last_index
        pts = max(round(self._slot_time(frame) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_index, self._last_pts = frame.index, pts
        output = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        output.pts = pts
        output.time_base = VIDEO_TIME_BASE
        self._on_sent(frame, repeated)
        return output

    def _slot_time(self, frame: VideoFrame) -> float:
        """The media time of the frame slot this tick fills: the frame's own pts when it is on time, a later slot
        when it is shown again or late. RTP timestamps must rise, and must match the echoed audio sent alongside."""
        due = self._pacer.due_media_time(self._pacer.clock.now())
        if due is None:
            return frame.pts
        fps = self._pacer.fps
        return max(frame.pts, round(due * fps) / fps)


class EchoAudioTrack(MediaStreamTrack):
    """Sends the caller's audio back, each chunk at `send_time(chunk media time)` on `clock`.

    At most `max_buffered` seconds wait; older audio is dropped, so a stalled sender cannot grow the queue.
    """

    kind = "audio"

    def __init__(self, clock: Clock, send_time: Callable[[float], float], max_buffered: float = 2.0) -> None:
        super().__init__()
        self._clock = clock
        self._send_time = send_time
        self._max_buffered = max_buffered
        self._queue: deque[tuple[float, AudioChunk]] = deque()
        self._buffered = 0.0
        self._arrived = asyncio.Event()

    def push(self, media_time: float, chunk: AudioChunk) -> None:
        """Queue `chunk`, whose first sample sits at `media_time` on the session timeline."""
        self._queue.append((media_time, chunk))
        self._buffered += chunk.duration
        while self._buffered > self._max_buffered:
            _, dropped = self._queue.popleft()
            self._buffered -= dropped.duration
        self._arrived.set()

    async def recv(self) -> av.AudioFrame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._arrived.clear()
            await self._arrived.wait()
        media_time, chunk = self._queue.popleft()
        self._buffered -= chunk.duration
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
