"""A voice placed on the session's media timeline and cut into slots: silence where nothing was placed.

A bot gets back the samples it sent, at its own rate, each with the frame it plays with: slot `k` carries the
samples from `k / fps` to `(k + 1) / fps` of the timeline. WebRTC peers get the voice the same way, in 20 ms
slots (`server.tracks.EchoAudioTrack`). Pieces that land where the previous one ended (within `JOIN_TOLERANCE`,
a resampler's filter delay) are joined end to end, so the voice has no gaps or overlaps of a few samples.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

Pcm16 = npt.NDArray[np.int16]

JOIN_TOLERANCE = 0.01
"""Seconds by which a piece may miss the end of the previous one and still be joined to it."""


class VoiceTimeline:
    def __init__(self, sample_rate: int, fps: float) -> None:
        self.sample_rate = sample_rate
        self.fps = fps
        self._pieces: deque[tuple[int, Pcm16]] = deque()  # (first sample on the timeline, samples), in order
        self._tolerance = round(JOIN_TOLERANCE * sample_rate)

    @property
    def end(self) -> float:
        """Media time at which the voice queued so far ends (0 when none is)."""
        if not self._pieces:
            return 0.0
        start, samples = self._pieces[-1]
        return (start + len(samples)) / self.sample_rate

    def place(self, media_time: float, samples: Pcm16) -> None:
        if not len(samples):
            return
        start = round(media_time * self.sample_rate)
        if self._pieces:
            last_start, last = self._pieces[-1]
            last_end = last_start + len(last)
            if abs(start - last_end) <= self._tolerance:
                start = last_end
        self._pieces.append((start, samples))

    def slot_bounds(self, slot: int) -> tuple[int, int]:
        """First and end sample of frame slot `slot`."""
        return round(slot * self.sample_rate / self.fps), round((slot + 1) * self.sample_rate / self.fps)

    def take(self, slot: int) -> Pcm16:
        """The samples of frame slot `slot`; everything before its end is forgotten."""
        first, end = self.slot_bounds(slot)
        out = np.zeros(end - first, dtype=np.int16)
        while self._pieces:
            start, samples = self._pieces[0]
            if start >= end:
                break
            lo, hi = max(start, first), min(start + len(samples), end)
            if hi > lo:
                out[lo - first : hi - first] = samples[lo - start : hi - start]
            if start + len(samples) <= end:
                self._pieces.popleft()
            else:
                self._pieces[0] = (end, samples[end - start :])
                break
        return out

    def forget_before(self, media_time: float) -> None:
        """Drop the voice before `media_time` (to bound what is kept)."""
        first = round(media_time * self.sample_rate)
        while self._pieces and self._pieces[0][0] < first:
            start, samples = self._pieces.popleft()
            if start + len(samples) > first:
                self._pieces.appendleft((first, samples[first - start :]))
                return

    def clear(self) -> None:
        self._pieces.clear()
