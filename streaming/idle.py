"""The always-on motion of a live face: blinks, a slight drifting head, breathing.

A pose is a pure function of the frame's media time (and the seed), not of what came before, so it is the same
whether the frame is drawn while speaking or while idle, and a stream can cut over between the two at any frame
without a jump. It never touches the mouth: the mouth belongs to the audio.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from streaming.frames import IdlePose

# Head drift: a few incommensurate low-frequency sines per axis, so the motion never visibly repeats.
_DRIFT_FREQUENCIES_HZ = (0.07, 0.13, 0.23)
_DRIFT_WEIGHTS = (0.55, 0.3, 0.15)
# Small on purpose: a head that sways further looks restless, not alive.
HEAD_OFFSET_AMPLITUDE = (0.02, 0.012)
"""Largest head offset (x, y), in face widths."""
HEAD_ROLL_AMPLITUDE = 1.5
"""Largest head roll, in degrees."""
BREATH_RATE_HZ = 0.25

# Share of a blink spent closing, held shut, and opening: lids drop fast and lift more slowly.
_BLINK_CLOSE = 0.35
_BLINK_HOLD = 0.15


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class IdleMotion:
    """Seeded idle behaviour: `pose(frame_index, fps)` is deterministic and continuous in media time."""

    def __init__(
        self,
        seed: int = 0,
        *,
        blink_interval: tuple[float, float] = (2.0, 6.0),
        blink_duration: tuple[float, float] = (0.15, 0.25),
    ) -> None:
        if not 0 < blink_interval[0] <= blink_interval[1]:
            raise ValueError(f"blink_interval must be an increasing pair of positive seconds, got {blink_interval}")
        if not 0 < blink_duration[0] <= blink_duration[1] < blink_interval[0]:
            raise ValueError(f"blink_duration must be positive and shorter than the interval, got {blink_duration}")
        self._blink_interval = blink_interval
        self._blink_duration = blink_duration
        rng = np.random.default_rng(seed)
        # One phase per (axis, sine): x offset, y offset, roll; then the breathing phase.
        self._drift_phases = rng.uniform(0.0, 2.0 * math.pi, size=(3, len(_DRIFT_FREQUENCIES_HZ))).tolist()
        self._breath_phase = float(rng.uniform(0.0, 2.0 * math.pi))
        self._blink_rng = rng
        # Blinks are drawn lazily, in order, so the schedule is the same however far ahead it is asked about.
        self._blink_starts: list[float] = []
        self._blink_lengths: list[float] = []
        self._schedule_blink(float(rng.uniform(0.5, blink_interval[0])))

    def pose(self, frame_index: int, fps: float) -> IdlePose:
        t = frame_index / fps
        return IdlePose(
            head_offset=(HEAD_OFFSET_AMPLITUDE[0] * self._drift(0, t), HEAD_OFFSET_AMPLITUDE[1] * self._drift(1, t)),
            head_roll=HEAD_ROLL_AMPLITUDE * self._drift(2, t),
            blink=self._blink(t),
            breath=math.sin(2.0 * math.pi * BREATH_RATE_HZ * t + self._breath_phase),
        )

    def _drift(self, axis: int, t: float) -> float:
        """A smooth value in [-1, 1]."""
        phases = self._drift_phases[axis]
        return sum(
            weight * math.sin(2.0 * math.pi * frequency * t + phase)
            for frequency, weight, phase in zip(_DRIFT_FREQUENCIES_HZ, _DRIFT_WEIGHTS, phases, strict=True)
        )

    def _blink(self, t: float) -> float:
        while self._blink_starts[-1] <= t:
            self._schedule_blink(self._blink_starts[-1] + float(self._blink_rng.uniform(*self._blink_interval)))
        latest = bisect.bisect_right(self._blink_starts, t) - 1
        if latest < 0:
            return 0.0
        phase = (t - self._blink_starts[latest]) / self._blink_lengths[latest]
        if phase >= 1.0:
            return 0.0
        if phase < _BLINK_CLOSE:
            return _smoothstep(phase / _BLINK_CLOSE)
        if phase < _BLINK_CLOSE + _BLINK_HOLD:
            return 1.0
        return 1.0 - _smoothstep((phase - _BLINK_CLOSE - _BLINK_HOLD) / (1.0 - _BLINK_CLOSE - _BLINK_HOLD))

    def _schedule_blink(self, start: float) -> None:
        self._blink_starts.append(start)
        self._blink_lengths.append(float(self._blink_rng.uniform(*self._blink_duration)))
