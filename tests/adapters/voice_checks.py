"""Checks shared by the adapter tests: the voice an adapter hands on, against the voice it was given."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from adapters.voice_segments import audible_pcm
from tests.server.test_bot_api import RATE

SKIPPED_SHARE = 0.1
"""Share of an utterance that may come back as silence, for frame slots a loaded server skipped."""
TAIL = 1.5
"""Seconds beyond an utterance's length allowed for it to play out."""
TTS_CHUNK = 1.0
"""Seconds of voice per message from the stand-in text-to-speech: a bot that stalls for this long between two
messages makes the server fill in silence, and these checks want none."""


def seconds(pcm: npt.NDArray[np.int16]) -> float:
    return len(pcm) / RATE


def chunked(pcm: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
    step = round(TTS_CHUNK * RATE)
    return [pcm[offset : offset + step] for offset in range(0, len(pcm), step)]


def assert_whole_voice(played: npt.NDArray[np.int16], said: npt.NDArray[np.int16]) -> None:
    """The voice came back at its length, each sample as sent, but for silence where the server skipped slots."""
    expected = audible_pcm(said)
    assert len(played) == len(expected), f"{len(played)} samples played, {len(expected)} said"
    skipped = played == 0
    assert np.array_equal(played[~skipped], expected[~skipped]), "each sample in its place"
    assert skipped.mean() <= SKIPPED_SHARE, f"{skipped.mean():.0%} of the voice was skipped"
