"""Shared fixtures for the lite renderer's tests: one renderer, one avatar of the default portrait (both
immutable, so shared by every test), and a spoken sentence."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE, FloatAudio
from streaming.lite import LiteAvatar, LiteRenderer, default_portrait_path, load_portrait


@pytest.fixture(scope="session")
def renderer() -> LiteRenderer:
    return LiteRenderer()


@pytest.fixture(scope="session")
def avatar(renderer: LiteRenderer) -> LiteAvatar:
    return renderer.prepare_avatar(load_portrait(default_portrait_path()))


@pytest.fixture(scope="session")
def speech_clip(tmp_path_factory: pytest.TempPathFactory) -> FloatAudio:
    """A few seconds of synthetic speech from espeak-ng, as 16 kHz mono float32."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "Hello, I am a talking portrait. My lips follow every word you say."],
        check=True,
        capture_output=True,
    )
    return _read_16k_mono(wav)


def _read_16k_mono(path: Path) -> FloatAudio:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.float32)
