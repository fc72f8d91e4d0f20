"""Live EchoMimic through the real `AvatarStream` (virtual clock): the gate closing and an interruption both bring
the face back to idle without a jump.

On tiny random weights a diffusion frame looks like nothing, so every step inside a window changes the picture a
lot; a jump back to the portrait would be as large. The fade makes the first step into idle a fraction of it.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echomimic.streaming_renderer import EchoMimicRenderer
from server.frame_metrics import frame_change
from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import VirtualClock
from streaming.frames import AudioChunk, VideoFrame
from streaming.offline import stream_offline
from streaming.renderer import WindowSpec
from tests.echomimic.fake_weights_folder import write_fake_weights_folder
from tests.streaming.signals import LoudnessClassifier, silence, tone

PORTRAIT = Path(__file__).parents[2] / "streaming/assets/default_portrait.png"
FIRST_FADE_STEP = 0.4
"""The first step from speech into idle, as a share of the median step inside a window (the fade's first frame
is a quarter of the way to idle)."""
TAKE_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def renderer(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EchoMimicRenderer:
    return EchoMimicRenderer.from_weights(
        write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights")),
        device="cpu",
        size=64,
        window=WindowSpec(frames=4, context=2, lookahead=0.08, onset_frames=2),
        num_inference_steps=1,
        audio_segment_seconds=1.0,
    )


@pytest.fixture(scope="module")
def avatar(renderer: EchoMimicRenderer) -> object:
    return renderer.prepare_avatar(np.asarray(Image.open(PORTRAIT).convert("RGB")))


def typical_step_inside_windows(frames: list[VideoFrame]) -> float:
    steps = [
        frame_change(before.image, after.image)
        for before, after in itertools.pairwise(frames)
        if before.speaking and after.speaking
    ]
    return float(np.median(steps))


async def test_the_gate_closing_fades_back_to_idle(renderer: EchoMimicRenderer, avatar: object) -> None:
    speech = np.concatenate([silence(0.4), tone(1.0), silence(1.0)])
    frames = [frame async for frame in stream_offline(renderer, avatar, speech)]
    ends = [index for index in range(1, len(frames)) if frames[index - 1].speaking and not frames[index].speaking]
    assert len(ends) == 1
    into_idle = frame_change(frames[ends[0] - 1].image, frames[ends[0]].image)
    assert into_idle < FIRST_FADE_STEP * typical_step_inside_windows(frames)


async def test_an_interruption_fades_back_to_idle_from_the_frame_on_screen(
    renderer: EchoMimicRenderer, avatar: object
) -> None:
    clock = VirtualClock()
    settings = StreamSettings(max_render_ahead=10.0, max_queued_frames=200)
    stream = AvatarStream(renderer, avatar, settings, clock, classifier=LoudnessClassifier())
    await stream.start()
    try:
        stream.push_audio(AudioChunk(np.concatenate([silence(0.3), tone(2.0)]), 0.0))
        taken: list[VideoFrame] = []
        while sum(frame.speaking for frame in taken) < 8:
            taken.append(await asyncio.wait_for(anext(stream), TAKE_TIMEOUT))
        stream.interrupt()
        await clock.advance(3.0)
        after = [await asyncio.wait_for(anext(stream), TAKE_TIMEOUT) for _ in range(6)]
    finally:
        await stream.aclose()
    assert after[0].index == taken[-1].index + 1
    assert not any(frame.speaking for frame in after)
    into_idle = frame_change(taken[-1].image, after[0].image)
    assert into_idle < FIRST_FADE_STEP * typical_step_inside_windows(taken)
