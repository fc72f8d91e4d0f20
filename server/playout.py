"""A session's one clock for its outputs: one tick per frame slot, read from the `FramePacer`.

Each tick carries the frame to show and the slot it fills: the slot's media time is when the frame goes out
minus the playout delay, on the frame grid. A frame on time fills its own slot; a repeated or late one fills a
later slot, so the slots (and the timestamps outputs stamp from them) always rise, one per tick, and the audio
an output sends with a tick is the audio of that slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.frames import VideoFrame
from streaming.pacer import FramePacer


@dataclass(frozen=True, slots=True)
class Tick:
    frame: VideoFrame
    slot: int
    """The frame slot this tick fills; its media time is `slot / fps`."""
    media_time: float
    repeated: bool
    """The frame was shown on the previous tick too."""


class Playout:
    def __init__(self, pacer: FramePacer) -> None:
        self._pacer = pacer
        self._last_slot = -1
        self._last_index: int | None = None

    @property
    def fps(self) -> float:
        return self._pacer.fps

    @property
    def next_media_time(self) -> float:
        """Media time of the slot the next tick fills at the earliest."""
        return (self._last_slot + 1) / self._pacer.fps

    async def next_tick(self) -> Tick:
        frame = await self._pacer.next_frame()
        due = self._pacer.due_media_time(self._pacer.clock.now())
        slot = frame.index if due is None else max(frame.index, round(due * self._pacer.fps))
        slot = max(slot, self._last_slot + 1)
        repeated = frame.index == self._last_index
        self._last_slot, self._last_index = slot, frame.index
        return Tick(frame, slot, slot / self._pacer.fps, repeated)
