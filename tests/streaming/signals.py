"""Test signals: speech, tones, silence, chunking, WAV files, and a VAD classifier with predictable verdicts."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE, AudioChunk, FloatAudio


def spoken(text: str, rate: int = SAMPLE_RATE) -> FloatAudio:
    """`text` said by espeak-ng, as mono float32 at `rate`, with espeak's own short lead-in and tail."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); these tests need real speech")
    said = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True, timeout=60)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    with av.open(io.BytesIO(said.stdout)) as container:
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    frames += resampler.resample(None)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.float32)


def write_wav(path: Path, samples: FloatAudio, rate: int) -> Path:
    """Write mono float audio in [-1, 1] as a 16-bit WAV file."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(rate)
        target.writeframes(pcm.tobytes())
    return path


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
