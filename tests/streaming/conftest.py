"""Shared fixtures for the streaming tests: a sentence of real (synthetic) speech."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE
from tests.streaming.signals import Speech, spoken

SPOKEN_TEXT = "Hello there. This is a short test of the voice activity detector."


@pytest.fixture(scope="session")
def speech() -> Speech:
    """Two sentences of synthetic speech from `espeak-ng`, at 16 kHz."""
    samples = spoken(SPOKEN_TEXT)
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    quiet_for = np.diff(loud)
    widest = int(np.argmax(quiet_for))
    return Speech(
        samples=samples,
        onset=loud[0] / SAMPLE_RATE,
        offset=(loud[-1] + 1) / SAMPLE_RATE,
        longest_pause=((loud[widest] + 1) / SAMPLE_RATE, loud[widest + 1] / SAMPLE_RATE),
    )
