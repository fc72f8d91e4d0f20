"""`EchoMimicVideoService` in Pipecat's own test harness (`run_test`, no transport), against a real server on
loopback running `lite`: what the service pushes downstream is what an output transport would play."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("pipecat", reason="Pipecat is not installed (pip install -e '.[pipecat]')")

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from adapters.pipecat_avatar import EchoMimicVideoService
from bench.mouth_probe import MouthProbe
from tests.adapters.voice_checks import TAIL, assert_whole_voice, chunked, seconds
from tests.server.test_bot_api import FPS, OPEN, RATE, ws_url


def utterance(pcm: npt.NDArray[np.int16]) -> list[Frame]:
    """What a text-to-speech service pushes for one reply: all at once, faster than real time."""
    audio = [TTSAudioRawFrame(audio=chunk.tobytes(), sample_rate=RATE, num_channels=1) for chunk in chunked(pcm)]
    return [TTSStartedFrame(), *audio, TTSStoppedFrame()]


def images(frames: Sequence[Frame]) -> list[OutputImageRawFrame]:
    return [frame for frame in frames if isinstance(frame, OutputImageRawFrame)]


def voice(frames: Sequence[Frame]) -> npt.NDArray[np.int16]:
    pieces = [np.frombuffer(frame.audio, np.int16) for frame in frames if isinstance(frame, TTSAudioRawFrame)]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


def openness(mouth_probe: MouthProbe, frame: OutputImageRawFrame) -> float:
    width, height = frame.size
    return mouth_probe.openness(mouth_probe.crop(np.frombuffer(frame.image, np.uint8).reshape(height, width, 3)))


async def test_frames_and_the_voice_come_out_in_step_and_the_voice_matches_what_was_sent(
    server_url: str, phrase: npt.NDArray[np.int16], mouth_probe: MouthProbe
) -> None:
    service = EchoMimicVideoService(url=ws_url(server_url))
    down, up = await run_test(
        service,
        frames_to_send=[SleepFrame(sleep=0.5), *utterance(phrase), SleepFrame(sleep=seconds(phrase) + TAIL)],
    )

    assert not up, f"no errors: {up}"
    pictures = images(down)
    assert len(pictures) > 0.8 * FPS * (seconds(phrase) + TAIL)
    assert {(frame.size, frame.format, frame.sync_with_audio) for frame in pictures} == {((512, 512), "RGB", True)}
    assert_whole_voice(voice(down), phrase)
    stops = [position for position, frame in enumerate(down) if isinstance(frame, TTSStoppedFrame)]
    last_voice = max(position for position, frame in enumerate(down) if isinstance(frame, TTSAudioRawFrame))
    assert len(stops) == 1 and stops[0] > last_voice, "the utterance ends once its voice has played out"

    # In step: each piece of voice comes right after the frame it plays with, and that frame moves its lips. (Only
    # silence for slots a loaded server skipped comes before the frame after them, and a server drops frames, not
    # voice, for a reader that falls behind.)
    voiced = [
        (before, frame)
        for before, frame in itertools.pairwise(down)
        if isinstance(frame, TTSAudioRawFrame) and np.frombuffer(frame.audio, np.int16).any()
    ]
    assert np.mean([isinstance(before, OutputImageRawFrame) for before, _ in voiced]) > 0.9
    with_voice = [before for before, _ in voiced if isinstance(before, OutputImageRawFrame)]
    assert np.mean([frame.metadata["avatar_speaking"] for frame in with_voice]) > 0.8
    steps = [
        (later - earlier) * FPS
        for earlier, later in itertools.pairwise(frame.metadata["avatar_pts"] for frame in pictures)
    ]
    assert all(round(step) >= 1 and step == pytest.approx(round(step)) for step in steps), "rising on the frame grid"
    assert max(openness(mouth_probe, frame) for frame in with_voice) > OPEN
    assert max(openness(mouth_probe, frame) for frame in pictures[: pictures.index(with_voice[0])]) < OPEN


async def test_an_interruption_stops_the_lips_within_the_barge_in_target_and_the_next_reply_plays(
    server_url: str, phrase: npt.NDArray[np.int16], mouth_probe: MouthProbe
) -> None:
    long_reply = np.concatenate([phrase, phrase])
    service = EchoMimicVideoService(url=ws_url(server_url))
    down, up = await run_test(
        service,
        frames_to_send=[
            *utterance(long_reply),
            SleepFrame(sleep=1.5),
            InterruptionFrame(),
            SleepFrame(sleep=1.0),
            *utterance(phrase),
            SleepFrame(sleep=seconds(phrase) + TAIL),
        ],
    )

    assert not up, f"no errors: {up}"
    cut = next(position for position, frame in enumerate(down) if isinstance(frame, InterruptionFrame))
    before, after = down[:cut], down[cut + 1 :]
    assert 0 < len(voice(before)) < len(long_reply) / 2, "the first reply was cut short"
    assert not any(isinstance(frame, TTSStoppedFrame) for frame in before)

    # Nothing of the first reply comes out after the interruption: the next frame is at rest (how soon it comes
    # is measured by bench/adapters_barge_in.py), and the portrait stays at rest until the next reply.
    pictures = images(after)
    resumed = next(position for position, frame in enumerate(pictures) if frame.metadata["avatar_speaking"])
    assert resumed > 0.8 * FPS, "at rest until the next reply, a second later"
    assert max(openness(mouth_probe, frame) for frame in pictures[:resumed]) < OPEN, "the mouth is closed"

    assert_whole_voice(voice(after), phrase)
    assert [type(frame) for frame in after if isinstance(frame, TTSStoppedFrame)] == [TTSStoppedFrame]
    speaking = sum(frame.metadata["avatar_speaking"] for frame in pictures[resumed:])
    assert speaking > 0.6 * FPS * seconds(phrase), "the next reply plays"
