"""What a viewer would notice in a rendered stream, measured from its frames: seams and lip-sync offset.

* Seam score: the mean absolute change between consecutive frames where two windows meet (or speech and idle
  meet), divided by the median change between consecutive frames inside a window. About 1 means a boundary looks
  like any other frame step; well above 1 is a visible jump.
* Lip-sync offset: mouth-region motion (mean absolute change of the mouth box from the previous frame) against
  the change of the audio envelope (RMS per frame interval) from the previous frame, cross-correlated over
  ±`max_lag` frames and refined to a fraction of a frame by a parabola through the peak. Both are changes: a mouth
  that follows the loudness moves when the loudness moves. Positive means the mouth moves after the voice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streaming.frames import SAMPLE_RATE, FloatAudio, RgbImage

Box = tuple[int, int, int, int]
"""x, y, width, height in pixels."""


@dataclass(frozen=True, slots=True)
class DrawnFrame:
    """A frame as the stream handed it out, with where it came from."""

    index: int
    image: RgbImage
    speaking: bool
    window: int | None
    """Which window (counting from 0) drew it; None for an idle frame."""


@dataclass(frozen=True, slots=True)
class SeamScores:
    window_boundaries: float | None
    """Mean change where two speech windows meet, over the median inside windows; None without such a boundary."""
    transitions: float | None
    """The same at speech↔idle changes; None without one."""
    inside_window_change: float
    """The median change between consecutive frames of one window (grey levels, 0-255), or between consecutive
    speaking frames when every window has one frame."""


def frame_change(first: RgbImage, second: RgbImage) -> float:
    return float(np.mean(np.abs(first.astype(np.int16) - second.astype(np.int16))))


class FrameObserver:
    """Watches frames as a stream draws them, in index order, holding only the previous frame and, per frame, the
    mouth motion: memory stays small however long the run."""

    def __init__(self, mouth: Box | None) -> None:
        self.mouth = mouth
        self._previous: DrawnFrame | None = None
        self._inside: list[float] = []
        self._boundaries: list[float] = []
        self._transitions: list[float] = []
        self._mouth_motion: dict[int, float] = {}  # frame index → change of the mouth box from the frame before

    def observe(self, frame: DrawnFrame) -> None:
        before, self._previous = self._previous, frame
        if before is None or frame.index != before.index + 1:
            return
        if self.mouth is not None:
            self._mouth_motion[frame.index] = _mouth_change(before.image, frame.image, self.mouth)
        change = frame_change(before.image, frame.image)
        if before.speaking != frame.speaking:
            self._transitions.append(change)
        elif before.speaking and before.window == frame.window:
            self._inside.append(change)
        elif before.speaking:
            self._boundaries.append(change)

    def seams(self) -> SeamScores:
        # One-frame windows (lite) have no inside: then every step between speaking frames is the reference.
        inside = self._inside if self._inside else self._boundaries
        typical = float(np.median(inside)) if inside else math.nan

        def score(changes: list[float]) -> float | None:
            return float(np.mean(changes)) / typical if changes and typical > 0 else None

        return SeamScores(score(self._boundaries), score(self._transitions), typical)

    def lip_sync_offset(self, audio: FloatAudio, fps: float, max_lag: int = 8) -> float | None:
        """Seconds by which mouth motion trails the voice (negative: leads); None without a mouth box, with too
        few frames, or when either signal is flat. Frame k depicts `audio` from k/fps to (k+1)/fps."""
        if len(self._mouth_motion) <= 2 * max_lag:
            return None
        frames = max(self._mouth_motion) + 1
        motion = np.zeros(frames)  # frames never drawn (skipped, dropped) count as still
        motion[list(self._mouth_motion)] = list(self._mouth_motion.values())
        envelope = np.array([_rms(audio, frame, fps) for frame in range(frames)])
        envelope_change = np.abs(np.diff(envelope, prepend=envelope[0]))
        lag = _best_lag(motion, envelope_change, max_lag)
        return None if math.isnan(lag) else lag / fps


def _mouth_change(first: RgbImage, second: RgbImage, mouth: Box) -> float:
    x, y, width, height = mouth
    return frame_change(first[y : y + height, x : x + width], second[y : y + height, x : x + width])


def _rms(audio: FloatAudio, frame: int, fps: float) -> float:
    start, stop = round(frame * SAMPLE_RATE / fps), round((frame + 1) * SAMPLE_RATE / fps)
    piece = audio[start:stop]
    return float(np.sqrt(np.mean(np.square(piece)))) if len(piece) else 0.0


def _best_lag(motion: npt.NDArray[np.float64], envelope: npt.NDArray[np.float64], max_lag: int) -> float:
    """The lag (frames, fractional) at which `motion[k + lag]` best matches `envelope[k]`; nan when flat."""
    motion, envelope = motion - motion.mean(), envelope - envelope.mean()
    if not motion.any() or not envelope.any():
        return math.nan
    lags = np.arange(-max_lag, max_lag + 1)
    correlation = np.array([_correlation_at(motion, envelope, int(lag)) for lag in lags])
    peak = int(np.argmax(correlation))
    if 0 < peak < len(lags) - 1:
        left, centre, right = correlation[peak - 1 : peak + 2]
        curvature = left - 2 * centre + right
        if curvature < 0:
            return float(lags[peak] + 0.5 * (left - right) / curvature)
    return float(lags[peak])


def _correlation_at(motion: npt.NDArray[np.float64], envelope: npt.NDArray[np.float64], lag: int) -> float:
    shifted, reference = (
        (motion[lag:], envelope[: len(envelope) - lag]) if lag >= 0 else (motion[:lag], envelope[-lag:])
    )
    norm = float(np.linalg.norm(shifted) * np.linalg.norm(reference))
    return float(np.dot(shifted, reference)) / norm if norm > 0 else 0.0
