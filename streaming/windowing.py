"""Cutting a 16 kHz audio timeline into the overlapping windows a renderer draws frames from.

Frame `k` (at `fps`) depicts the audio from `k / fps` to `(k + 1) / fps`; its first sample is
`frame_start_sample(k, fps)`, rounded to the nearest sample so that rounding never accumulates. A window for
frames `[k, k + n)` holds the audio from `context` frames before `k` to `lookahead` seconds after frame
`k + n - 1` ends. Audio before media time 0 is silence; so is look-ahead past the end of a finished stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from streaming.frames import SAMPLE_RATE, AudioWindow, FloatAudio, IdlePose
from streaming.renderer import WindowSpec


def frame_start_sample(frame_index: int, fps: float) -> int:
    """Timeline index of the first sample of frame `frame_index`."""
    return round(frame_index * SAMPLE_RATE / fps)


def frames_starting_before(sample: int, fps: float) -> int:
    """How many frames start before timeline sample `sample` (so frame indices `0 .. n - 1` touch the audio)."""
    estimate = max(0, math.ceil(sample * fps / SAMPLE_RATE))
    while estimate > 0 and frame_start_sample(estimate - 1, fps) >= sample:
        estimate -= 1
    while frame_start_sample(estimate, fps) < sample:
        estimate += 1
    return estimate


class AudioTimeline:
    """Append-only 16 kHz mono audio from media time 0, of which only the part still needed is kept in memory.

    Positions are absolute sample indices on the timeline. Reading before 0 or past the end gives silence;
    reading what was already discarded is a bug and raises.
    """

    def __init__(self, initial_capacity: int = SAMPLE_RATE) -> None:
        self._buffer: FloatAudio = np.zeros(initial_capacity, dtype=np.float32)
        self._first = 0  # timeline index of _buffer[0]
        self._length = 0
        self._erased_before = 0  # samples before this read as silence: nothing was ever heard there

    @property
    def start(self) -> int:
        """First sample still held."""
        return self._first

    @property
    def end(self) -> int:
        """One past the last sample appended."""
        return self._first + self._length

    def append(self, samples: FloatAudio) -> None:
        self._reserve(len(samples))
        self._buffer[self._length : self._length + len(samples)] = samples
        self._length += len(samples)

    def read(self, start: int, stop: int) -> FloatAudio:
        """Samples `[start, stop)`, zero-filled where they fall before 0, before a restart, or after the end."""
        if start > stop:
            raise ValueError(f"cannot read backwards ({start} > {stop})")
        needed_from = max(start, self._erased_before)
        if needed_from < min(self._first, stop, self.end):
            raise ValueError(f"samples from {needed_from} were already discarded (kept from {self._first})")
        out = np.zeros(stop - start, dtype=np.float32)
        lo, hi = max(start, self._first), min(stop, self.end)
        if lo < hi:
            out[lo - start : hi - start] = self._buffer[lo - self._first : hi - self._first]
        return out

    def discard_before(self, position: int) -> None:
        """Drop samples before `position` (no more than exist)."""
        drop = min(max(position - self._first, 0), self._length)
        if drop:
            self._buffer[: self._length - drop] = self._buffer[drop : self._length]
            self._first += drop
            self._length -= drop

    def restart_at(self, position: int) -> None:
        """Forget everything: what lies before `position` now reads as silence, and the next append lands there."""
        self._first = position
        self._length = 0
        self._erased_before = position

    def _reserve(self, count: int) -> None:
        if self._length + count > len(self._buffer):
            grown = np.zeros(max(2 * len(self._buffer), self._length + count), dtype=np.float32)
            grown[: self._length] = self._buffer[: self._length]
            self._buffer = grown


class WindowCutter:
    """Cuts consecutive frames of an `AudioTimeline` into `AudioWindow`s, `spec.frames` frames at a time.

    `next_frame` is the first frame not yet cut. `ready_windows()` returns the full windows whose audio (with
    look-ahead) has arrived; `flush()` ends the audio and returns the rest, the last window partial. A caller that
    decides window sizes itself (a speech gate) uses `can_cut`, `cut` and `skip` instead.
    """

    def __init__(self, spec: WindowSpec, fps: float, pose_at: Callable[[int], IdlePose]) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.spec = spec
        self.fps = fps
        self.timeline = AudioTimeline()
        self.next_frame = 0
        self._pose_at = pose_at
        self._lookahead_samples = round(spec.lookahead * SAMPLE_RATE)
        self._ended = False

    def append(self, samples: FloatAudio) -> None:
        if self._ended:
            raise RuntimeError("audio appended after flush()")
        self.timeline.append(samples)

    def audio_needed(self, frame_count: int) -> int:
        """Timeline sample up to which audio must exist to cut the next `frame_count` frames."""
        return frame_start_sample(self.next_frame + frame_count, self.fps) + self._lookahead_samples

    def can_cut(self, frame_count: int) -> bool:
        return self._ended or self.timeline.end >= self.audio_needed(frame_count)

    def cut(self, frame_count: int, *, ends_speech: bool = False) -> AudioWindow:
        """The window for the next `frame_count` frames; they count as drawn."""
        if frame_count < 1:
            raise ValueError(f"a window needs at least one frame, got {frame_count}")
        first = self.next_frame
        start = frame_start_sample(first - self.spec.context, self.fps)
        window = AudioWindow(
            samples=self.timeline.read(start, self.audio_needed(frame_count)),
            start_time=start / SAMPLE_RATE,
            fps=self.fps,
            first_frame=first,
            frame_count=frame_count,
            context_frames=self.spec.context,
            lookahead=self.spec.lookahead,
            poses=tuple(self._pose_at(index) for index in range(first, first + frame_count)),
            ends_speech=ends_speech,
        )
        self.skip(frame_count)
        return window

    def skip(self, frame_count: int) -> None:
        """Count `frame_count` frames as handled without a window (drawn idle, or dropped)."""
        self.next_frame += frame_count
        # Keep the context of the next window, nothing older.
        self.timeline.discard_before(frame_start_sample(self.next_frame - self.spec.context, self.fps))

    def restart(self, frame_index: int) -> None:
        """Forget all audio and continue at frame `frame_index`, whose context now reads as silence."""
        self.next_frame = frame_index
        self.timeline.restart_at(frame_start_sample(frame_index, self.fps))

    def ready_windows(self) -> list[AudioWindow]:
        windows = []
        while self.frames_left() >= self.spec.frames and self.can_cut(self.spec.frames):
            windows.append(self.cut(self.spec.frames))
        return windows

    def end_audio(self) -> None:
        """No more audio will come: what is missing at the end (look-ahead) reads as silence."""
        self._ended = True

    def flush(self) -> list[AudioWindow]:
        """End of audio: cut every remaining frame that touches it, look-ahead filled with silence."""
        self.end_audio()
        windows = []
        while remaining := self.frames_left():
            windows.append(self.cut(min(remaining, self.spec.frames)))
        return windows

    def frames_left(self) -> int:
        """Frames from `next_frame` that start before the end of the audio appended so far."""
        return max(0, frames_starting_before(self.timeline.end, self.fps) - self.next_frame)
