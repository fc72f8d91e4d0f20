"""Test signals: speech, tones, silence, chunking, and a VAD classifier whose verdicts are exactly predictable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streaming.frames import SAMPLE_RATE, AudioChunk, FloatAudio


@dataclass(frozen=True)
class Speech:
    samples: FloatAudio
    """16 kHz mono float32, as `espeak-ng` said it (with its own short lead-in and tail)."""
    onset: float
    """Seconds to the first sample louder than -34 dBFS."""
    offset: float
    """Seconds to just after the last sample louder than -34 dBFS."""
    longest_pause: tuple[float, float]
    """(start, end) seconds of the longest quiet stretch between onset and offset: the break between sentences."""


class LoudnessClassifier:
    """A stand-in for webrtcvad with exactly predictable verdicts: a frame is voiced when its RMS exceeds 0.05."""

    def is_speech(self, buf: bytes, sample_rate: int) -> bool:
        frame = np.frombuffer(buf, dtype=np.int16).astype(np.float64) / 32768.0
        return float(np.sqrt(np.mean(np.square(frame)))) > 0.05


def tone(duration: float, amplitude: float = 0.3, frequency: float = 220.0, start: float = 0.0) -> FloatAudio:
    """A sine from media time `start`, loud enough for `LoudnessClassifier` when amplitude > 0.071."""
    t = start + np.arange(round(duration * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def silence(duration: float) -> FloatAudio:
    return np.zeros(round(duration * SAMPLE_RATE), dtype=np.float32)


def chunks(samples: FloatAudio, duration: float = 0.02, start: float = 0.0) -> Iterator[AudioChunk]:
    """`samples` cut into chunks of `duration` seconds with pts counted from `start`, as a resampler gives them."""
    size = round(duration * SAMPLE_RATE)
    for offset in range(0, len(samples), size):
        yield AudioChunk(samples=samples[offset : offset + size], pts=start + offset / SAMPLE_RATE)
