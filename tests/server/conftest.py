"""Shared fixtures for the server tests: spoken test audio and an app served in-process."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import av
import httpx2
import numpy as np
import numpy.typing as npt
import pytest

from server.app import create_app
from server.settings import ServerSettings
from streaming.renderer import Renderer
from tests.server.fake_renderer import LoudnessRenderer

SPOKEN_TEXT = "Hello, my name is Eileen. I fly to space, and I like to talk about it."
SPEECH_RATE = 48_000
"""Chromium's fake audio capture plays 48 kHz files most faithfully; the aiortc tests use the same audio."""
LEAD_IN = 1.0
TAIL = 1.5


def speak(text: str, target: Path) -> None:
    """Synthesise `text` with espeak-ng into a 48 kHz mono 16-bit WAV at `target`, with silence around it."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); the server tests need spoken audio")
    spoken = target.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-w", str(spoken), text], check=True, capture_output=True, timeout=60)
    with av.open(str(spoken)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SPEECH_RATE)
        pieces = [
            out.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for out in resampler.resample(frame)
        ]
        pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    voice = np.concatenate(pieces).astype(np.int16)
    silence_before = np.zeros(round(LEAD_IN * SPEECH_RATE), dtype=np.int16)
    silence_after = np.zeros(round(TAIL * SPEECH_RATE), dtype=np.int16)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SPEECH_RATE)
        out.writeframes(np.concatenate([silence_before, voice, silence_after]).tobytes())


def read_wav(path: Path) -> npt.NDArray[np.float32]:
    with wave.open(str(path)) as source:
        assert source.getframerate() == SPEECH_RATE and source.getnchannels() == 1
        pcm = np.frombuffer(source.readframes(source.getnframes()), dtype=np.int16)
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One spoken sentence, 48 kHz mono WAV: 1 s of silence, the sentence, 1.5 s of silence."""
    path = tmp_path_factory.mktemp("speech") / "sentence.wav"
    speak(SPOKEN_TEXT, path)
    return path


@pytest.fixture(scope="session")
def speech(speech_wav: Path) -> npt.NDArray[np.float32]:
    return read_wav(speech_wav)


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        avatar_dir=tmp_path / "avatars",
        ice_host_addresses=("127.0.0.1",),
        media_timeout=5.0,
    )


@asynccontextmanager
async def serving(settings: ServerSettings, renderer: Renderer[Any] | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    """The app, with its lifespan, behind an HTTP client in this event loop; every session is closed on exit."""
    app = create_app(settings, renderer=renderer if renderer is not None else LoudnessRenderer())
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://echolive.test") as http,
    ):
        yield http
