"""From a window of speech to one mouth shape per frame: how far open and how wide.

Loudness opens the mouth: band-limited level in dB, mapped between a floor (closed) and a ceiling (wide
open). Spectral balance shapes it: vowels like "ee" put energy high (lips spread), "oo" keeps it low (lips
round). Both are followed with a fast attack and a slower release, as a jaw moves, on a 10 ms grid.

The driver keeps no state between windows, so an interruption can never leave a mouth hanging open: each
window's smoothing starts from its own context audio, and silence is exactly a closed mouth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streaming.frames import SAMPLE_RATE, AudioWindow
from streaming.lite.smoothstep import smoothstep

_HOP = 160
"""10 ms analysis steps."""
_FRAME = 320
"""20 ms analysis frames, centred on each step."""
_FREQUENCIES = np.fft.rfftfreq(_FRAME, 1 / SAMPLE_RATE)
_SPEECH_BAND = (_FREQUENCIES >= 100) & (_FREQUENCIES <= 4000)
_LOW_BAND = (_FREQUENCIES >= 200) & (_FREQUENCIES <= 1000)
_HIGH_BAND = (_FREQUENCIES >= 1800) & (_FREQUENCIES <= 5000)
_TAPER = np.hanning(_FRAME).astype(np.float32)
_POWER_SCALE = 2.0 / (_FRAME * float(np.sum(_TAPER**2)))
"""Turns summed |FFT|^2 of a tapered frame into the mean power of the signal in the band (Parseval)."""


@dataclass(frozen=True, slots=True)
class MouthShape:
    opening: float
    """0 closed, 1 wide open."""
    spread: float
    """-1 rounded ("oo"), 0 neutral, 1 spread ("ee")."""


CLOSED = MouthShape(opening=0.0, spread=0.0)


@dataclass(frozen=True, slots=True)
class MouthDriver:
    floor_db: float = -50.0
    """Speech-band level (dBFS) at and below which the mouth is closed."""
    ceiling_db: float = -10.0
    """Level at and above which it is wide open."""
    attack: float = 0.025
    """Seconds for the opening to cover 63 % of a rise."""
    release: float = 0.07
    """Seconds for it to cover 63 % of a fall."""
    shape_time: float = 0.05
    """Seconds for the spread to follow the spectrum."""
    lead: float = 0.02
    """Lips move slightly before the sound they make; each frame shows the audio this much later."""
    dark_ratio_db: float = -22.0
    """High/low band ratio that reads as fully rounded lips."""
    bright_ratio_db: float = -2.0
    """High/low band ratio that reads as fully spread lips."""

    def shapes(self, window: AudioWindow) -> list[MouthShape]:
        """One shape per frame to draw in `window`."""
        level_db, ratio_db = _analyse(window.samples)
        # The S-curve keeps quiet hiss shut and lets loud speech saturate gently.
        opening_target = smoothstep((level_db - self.floor_db) / (self.ceiling_db - self.floor_db))
        # Spectral balance means nothing in near-silence, and must not move a closed mouth.
        spread_target = np.clip(
            2 * (ratio_db - self.dark_ratio_db) / (self.bright_ratio_db - self.dark_ratio_db) - 1, -1, 1
        ) * np.clip(3 * opening_target, 0, 1)

        context_steps = max(1, round(window.context_frames / window.fps * SAMPLE_RATE / _HOP))
        opening = _follow(
            opening_target,
            start=float(opening_target[:context_steps].max(initial=0.0)),
            rise=_coefficient(self.attack),
            fall=_coefficient(self.release),
        )
        spread = _follow(
            spread_target,
            start=float(spread_target[0]) if len(spread_target) else 0.0,
            rise=_coefficient(self.shape_time),
            fall=_coefficient(self.shape_time),
        )

        step_times = window.start_time + (np.arange(len(opening)) + 0.5) * _HOP / SAMPLE_RATE
        shapes = []
        for frame in range(window.first_frame, window.first_frame + window.frame_count):
            start = window.frame_time(frame) + self.lead
            end = window.frame_time(frame + 1) + self.lead
            shapes.append(
                MouthShape(
                    opening=_average_over(step_times, opening, start, end),
                    spread=_average_over(step_times, spread, start, end),
                )
            )
        return shapes


def _analyse(samples: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per 10 ms step: speech-band level in dBFS and high/low band power ratio in dB."""
    steps = math.ceil(len(samples) / _HOP)
    padded = np.zeros(steps * _HOP + _FRAME, dtype=np.float32)
    padded[_FRAME // 2 - _HOP // 2 : _FRAME // 2 - _HOP // 2 + len(samples)] = samples
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::_HOP][:steps]
    power = np.abs(np.fft.rfft(frames * _TAPER, axis=1)) ** 2 * _POWER_SCALE
    tiny = 1e-12
    level_db = 10 * np.log10(power[:, _SPEECH_BAND].sum(axis=1) + tiny)
    ratio_db = 10 * np.log10((power[:, _HIGH_BAND].sum(axis=1) + tiny) / (power[:, _LOW_BAND].sum(axis=1) + tiny))
    return level_db, ratio_db


def _coefficient(time_constant: float) -> float:
    return 1.0 - math.exp(-_HOP / SAMPLE_RATE / time_constant)


def _follow(target: npt.NDArray[np.float64], *, start: float, rise: float, fall: float) -> npt.NDArray[np.float64]:
    """One-pole follower with separate coefficients for rising and falling."""
    out = np.empty_like(target)
    value = start
    for i, goal in enumerate(target.tolist()):
        value += (rise if goal > value else fall) * (goal - value)
        out[i] = value
    return out


def _average_over(times: npt.NDArray[np.float64], values: npt.NDArray[np.float64], start: float, end: float) -> float:
    """Mean of a stepped signal over [start, end); the nearest step's value when no step falls inside."""
    if len(values) == 0:
        return 0.0
    inside = (times >= start) & (times < end)
    if inside.any():
        return float(values[inside].mean())
    return float(np.interp((start + end) / 2, times, values))
