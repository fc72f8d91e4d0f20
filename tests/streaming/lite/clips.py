"""Audio for the lite renderer's tests: synthetic vowels, and a clip cut into the windows a stream would make."""

from __future__ import annotations

import numpy as np

from streaming.frames import SAMPLE_RATE, AudioWindow, FloatAudio, IdlePose
from streaming.renderer import WindowSpec
from streaming.windowing import WindowCutter


def vowel(level_db: float, seconds: float, *, formants: tuple[float, ...] = (700.0, 1200.0)) -> FloatAudio:
    """A sung vowel: harmonics of 140 Hz shaped by resonances at `formants`, at `level_db` dBFS RMS."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = np.zeros_like(t)
    for harmonic in np.arange(140.0, 5000.0, 140.0):
        gain = sum(1 / (1 + ((harmonic - f) / 120) ** 2) for f in formants)
        signal += gain * np.sin(2 * np.pi * harmonic * t)
    signal *= 10 ** (level_db / 20) / np.sqrt(np.mean(signal**2))
    return signal.astype(np.float32)


def cut_into_windows(clip: FloatAudio, spec: WindowSpec, fps: float) -> list[AudioWindow]:
    """The windows for every frame of a clip that starts at media time 0, with silence before the clip's start
    and after its end, all with the rest pose."""
    cutter = WindowCutter(spec, fps, lambda index: IdlePose())
    cutter.append(clip)
    return cutter.flush()
