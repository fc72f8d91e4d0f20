"""Turns rendered frames into a steady video clock: one frame per tick, each shown when its audio plays.

The audio is the master clock. A frame's `pts` is the media time of the audio it depicts, and an anchor ties
one media time to one wall time; a frame is due `playout_delay` seconds after its media time comes round on the
wall. At every tick the pacer shows the newest due frame and drops the older ones (rendering fell behind), or
shows the previous frame again when nothing new is due (rendering is ahead, or stalled).

Ticks fall on the frame boundaries of the anchor: the wall times at which some frame becomes due. So a frame
leaves the moment it is due, never up to a frame period later, however the consumer's first call is timed. Each
tick is computed from the grid, never accumulated, so over a long session neither the ticks nor the lips drift
from the voice.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from streaming.clock import Clock
from streaming.frames import VideoFrame

# A frame whose pts lies within this much of the due time counts as due, absorbing float error in `index / fps`.
_DUE_TOLERANCE = 1e-6
# A time within this many periods after a tick counts as on it, absorbing float error in the grid.
_GRID_TOLERANCE = 1e-6


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
        self._last_tick: float | None = None
        self._unanchored_origin: float | None = None

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
        """Wait for the next tick and return the frame to show on it. The first tick is the first frame boundary
        from now on. Waits past ticks while nothing has ever been due (before the first frame), since there is
        nothing to repeat yet."""
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
        grid = self._grid_origin(now)
        if self._last_tick is None:
            tick = math.ceil((now - grid) * self.fps - _GRID_TOLERANCE)
        else:
            # The first grid time more than half a period after the last tick: the next one, also when the anchor
            # has moved the grid since.
            tick = math.ceil((self._last_tick - grid) * self.fps + 0.5)
            latest_passed = math.floor((now - grid) * self.fps + _GRID_TOLERANCE)
            if latest_passed > tick:
                # The consumer came back late; skip the ticks it missed rather than bursting through them.
                self.stats.late_ticks += latest_passed - tick
                tick = latest_passed
        self._last_tick = grid + tick / self.fps
        return self._last_tick

    def _grid_origin(self, now: float) -> float:
        """A wall time on the tick grid: when media time 0 is due; before an anchor, the first call's time."""
        if self._anchor is not None:
            media, wall = self._anchor
            return wall + self.playout_delay - media
        if self._unanchored_origin is None:
            self._unanchored_origin = now
        return self._unanchored_origin

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
