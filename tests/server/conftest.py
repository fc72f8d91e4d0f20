"""Shared fixtures for the server tests: spoken test audio and an app served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import numpy.typing as npt
import pytest

from bench.mouth_probe import MouthProbe
from server.app import create_app
from server.settings import ServerSettings
from streaming.lite.default_portrait import default_portrait_path, load_portrait
from streaming.lite.renderer import LiteRenderer
from streaming.renderer import Renderer
from tests.server.fake_renderer import LoudnessRenderer
from tests.server.fuzzing import LogWatcher, inputs_tried, watching_logs
from tests.streaming.signals import spoken, write_wav

SPOKEN_TEXT = "Hello, my name is Eileen. I fly to space, and I like to talk about it."
SPEECH_RATE = 48_000
"""Chromium's fake audio capture plays 48 kHz files most faithfully; the aiortc tests use the same audio."""
LEAD_IN = 1.0
TAIL = 1.5


@pytest.fixture(scope="session")
def speech() -> npt.NDArray[np.float32]:
    """One spoken sentence, 48 kHz mono: 1 s of silence, the sentence, 1.5 s of silence."""
    silence_before = np.zeros(round(LEAD_IN * SPEECH_RATE), dtype=np.float32)
    silence_after = np.zeros(round(TAIL * SPEECH_RATE), dtype=np.float32)
    return np.concatenate([silence_before, spoken(SPOKEN_TEXT, SPEECH_RATE), silence_after])


@pytest.fixture(scope="session")
def speech_wav(speech: npt.NDArray[np.float32], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`speech` as a 16-bit WAV file."""
    return write_wav(tmp_path_factory.mktemp("speech") / "sentence.wav", speech, SPEECH_RATE)


@pytest.fixture(scope="session")
def lite_renderer() -> LiteRenderer:
    return LiteRenderer()


@pytest.fixture(scope="session")
def mouth_probe(lite_renderer: LiteRenderer) -> MouthProbe:
    """Where the bundled portrait's mouth is, in `lite_renderer`'s frames."""
    return MouthProbe.around(lite_renderer.prepare_avatar(load_portrait(default_portrait_path())))


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


@pytest.fixture(scope="module")
def error_logs() -> Iterator[LogWatcher]:
    """Every record at ERROR or above logged while a module's tests run (the fuzz tests want none)."""
    with watching_logs() as watcher:
        yield watcher


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many inputs each fuzz property was tried on in this run."""
    if inputs_tried:
        terminalreporter.section("fuzz inputs tried")
        for prop, count in sorted(inputs_tried.items()):
            terminalreporter.write_line(f"{count:6d}  {prop}")
        terminalreporter.write_line(f"{sum(inputs_tried.values()):6d}  in all")
