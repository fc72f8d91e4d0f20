"""Shared fixtures for the lite renderer's tests: one renderer, one avatar of the default portrait (both
immutable, so shared by every test), and a spoken sentence."""

from __future__ import annotations

import pytest

from streaming.frames import FloatAudio
from streaming.lite import LiteAvatar, LiteRenderer, default_portrait_path, load_portrait
from tests.streaming.signals import spoken


@pytest.fixture(scope="session")
def renderer() -> LiteRenderer:
    return LiteRenderer()


@pytest.fixture(scope="session")
def avatar(renderer: LiteRenderer) -> LiteAvatar:
    return renderer.prepare_avatar(load_portrait(default_portrait_path()))


@pytest.fixture(scope="session")
def speech_clip() -> FloatAudio:
    """A few seconds of synthetic speech from espeak-ng, as 16 kHz mono float32."""
    return spoken("Hello, I am a talking portrait. My lips follow every word you say.")
