"""Shared fixtures for the streaming tests: a sentence of real (synthetic) speech."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE
from streaming.resampler import AudioResampler
from tests.streaming.signals import Speech

SPOKEN_TEXT = "Hello there. This is a short test of the voice activity detector."


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """A sentence of synthetic speech from `espeak-ng`, resampled to 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); the VAD tests need real speech")
    wav = tmp_path_factory.mktemp("speech") / "sentence.wav"
    spoken = subprocess.run(["espeak-ng", "--stdout", SPOKEN_TEXT], capture_output=True, check=True, timeout=60)
    wav.write_bytes(spoken.stdout)
    # espeak-ng streams its WAV, so the header's length fields are placeholders: read what is actually there.
    with wave.open(io.BytesIO(wav.read_bytes())) as reader:
        rate, channels = reader.getframerate(), reader.getnchannels()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    resampler = AudioResampler()
    chunks = [resampler.resample_pcm(pcm, rate, channels), resampler.flush()]
    samples = np.concatenate([chunk.samples for chunk in chunks if chunk is not None])
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    quiet_for = np.diff(loud)
    widest = int(np.argmax(quiet_for))
    return Speech(
        samples=samples,
        onset=loud[0] / SAMPLE_RATE,
        offset=(loud[-1] + 1) / SAMPLE_RATE,
        longest_pause=((loud[widest] + 1) / SAMPLE_RATE, loud[widest + 1] / SAMPLE_RATE),
    )
