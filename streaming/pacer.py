"""Turns rendered frames into a steady video clock: one frame per tick, each shown when its audio plays.

The audio is the master clock. A frame's `pts` is the media time of the audio it depicts, and an anchor ties
one media time to one wall time; a frame is due `playout_delay` seconds after its media time comes round on the
wall. At every tick the pacer shows the newest due frame and drops the older ones (rendering fell behind), or
shows the previous frame again when nothing new is due (rendering is ahead, or stalled). Ticks are computed from
the first one, never accumulated, so over a long session neither the ticks nor the lips drift from the voice.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from streaming.clock import Clock
from streaming.frames import VideoFrame

# A frame whose pts lies within this much of the due time counts as due, absorbing float error in `index / fps`.
_DUE_TOLERANCE = 1e-6


@dataclass(slots=True)
class PacerStats:
    emitted: int = 0
    """Ticks that showed a new frame."""
    repeated: int = 0
    """Ticks that showed the previous frame again."""
    dropped: int = 0
    """Frames never shown: overtaken by a newer due frame, late on arrival, over the buffer bound, or cleared."""
    late_ticks: int = 0
    """Ticks skipped because the consumer asked for frames more than a tick late."""


class FramePacer:
    """Paces frames from one stream at `fps` on `clock`."""

    def __init__(self, clock: Clock, fps: float, playout_delay: float, *, max_buffered: int = 256) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if playout_delay < 0:
            raise ValueError(f"playout_delay must not be negative, got {playout_delay}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered}")
        self.clock = clock
        self.fps = fps
        self.playout_delay = playout_delay
        self.stats = PacerStats()
        self._max_buffered = max_buffered
        self._buffer: list[VideoFrame] = []  # sorted by pts
        self._anchor: tuple[float, float] | None = None  # (media time, wall time)
        self._shown: VideoFrame | None = None
        self._first_tick: float | None = None
        self._tick = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def anchor(self, media_time: float, wall_time: float) -> None:
        """Media time `media_time` plays at `wall_time` on the clock (its frame shows `playout_delay` later)."""
        self._anchor = (media_time, wall_time)

    def push(self, frame: VideoFrame) -> None:
        """Queue a rendered frame. Without an explicit anchor, the first frame anchors its pts to now."""
        if self._anchor is None:
            self.anchor(frame.pts, self.clock.now())
        if self._shown is not None and frame.pts <= self._shown.pts:
            self.stats.dropped += 1
            return
        bisect.insort(self._buffer, frame, key=lambda queued: queued.pts)
        if len(self._buffer) > self._max_buffered:
            del self._buffer[0]
            self.stats.dropped += 1

    def clear(self) -> None:
        """Drop every queued frame (an interrupt); the frame on screen stays until a new one is due."""
        self.stats.dropped += len(self._buffer)
        self._buffer.clear()

    def due_media_time(self, wall_time: float) -> float | None:
        """The media time whose frame is due at `wall_time`, or None before the pacer is anchored."""
        if self._anchor is None:
            return None
        media, wall = self._anchor
        return media + (wall_time - wall - self.playout_delay)

    async def next_frame(self) -> VideoFrame:
        """Wait for the next tick and return the frame to show on it. Waits past ticks while nothing has ever been
        due (before the first frame), since there is nothing to repeat yet."""
        while True:
            tick_time = self._next_tick_time()
            await self.clock.sleep_until(tick_time)
            frame = self._take_due(tick_time)
            if frame is not None:
                self._shown = frame
                self.stats.emitted += 1
                return frame
            if self._shown is not None:
                self.stats.repeated += 1
                return self._shown

    def _next_tick_time(self) -> float:
        now = self.clock.now()
        if self._first_tick is None:
            self._first_tick = now
        tick_time = self._first_tick + self._tick / self.fps
        if now - tick_time >= 1.0 / self.fps:
            # The consumer came back late; skip the ticks it missed rather than bursting through them.
            missed = int((now - tick_time) * self.fps)
            self.stats.late_ticks += missed
            self._tick += missed
            tick_time = self._first_tick + self._tick / self.fps
        self._tick += 1
        return tick_time

    def _take_due(self, tick_time: float) -> VideoFrame | None:
        due = self.due_media_time(tick_time)
        if due is None:
            return None
        count = bisect.bisect_right(self._buffer, due + _DUE_TOLERANCE, key=lambda queued: queued.pts)
        if count == 0:
            return None
        frame = self._buffer[count - 1]
        self.stats.dropped += count - 1
        del self._buffer[:count]
        return frame
