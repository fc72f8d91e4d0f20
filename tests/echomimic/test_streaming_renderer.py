"""`EchoMimicRenderer` on tiny weights: window and idle frame counts, sizes, continuity noise and checks.

The windows and poses are the streaming package's own message types, which the renderer accepts by shape.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echomimic.streaming_renderer import EchoMimicAvatar, EchoMimicRenderer, EchoMimicWindow, frame_noise
from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

PORTRAIT = Path(__file__).parents[2] / "streaming/assets/default_portrait.png"
FPS = 24.0


@pytest.fixture(scope="module")
def renderer(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EchoMimicRenderer:
    weights_dir = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    return EchoMimicRenderer.from_weights(
        weights_dir,
        device="cpu",
        size=64,
        fps=FPS,
        window=EchoMimicWindow(frames=4, context=2, lookahead=0.1),
        num_inference_steps=2,
    )


@pytest.fixture(scope="module")
def avatar(renderer: EchoMimicRenderer) -> EchoMimicAvatar:
    return renderer.prepare_avatar(np.asarray(Image.open(PORTRAIT).convert("RGB")))


def _window(first_frame: int, frame_count: int, context_frames: int, lookahead: float = 0.1) -> AudioWindow:
    start_time = (first_frame - context_frames) / FPS
    duration = (context_frames + frame_count) / FPS + lookahead
    time = start_time + np.arange(int(duration * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.3 * np.sin(2 * np.pi * 180 * time)).astype(np.float32)
    return AudioWindow(
        samples=samples,
        start_time=start_time,
        fps=FPS,
        first_frame=first_frame,
        frame_count=frame_count,
        context_frames=context_frames,
        lookahead=lookahead,
        poses=(IdlePose(),) * frame_count,
    )


def test_the_renderer_describes_itself(renderer: EchoMimicRenderer) -> None:
    assert renderer.name == "echomimic"
    assert renderer.fps == FPS
    assert renderer.frame_size == (64, 64)
    assert (renderer.window.frames, renderer.window.context, renderer.window.lookahead) == (4, 2, 0.1)


def test_the_avatar_is_the_face_crop_with_its_conditioning(avatar: EchoMimicAvatar) -> None:
    assert avatar.image.shape == (64, 64, 3) and avatar.image.dtype == np.uint8
    assert avatar.reference.latents.shape == (1, 4, 8, 8)
    assert avatar.reference.face_features.shape == (1, 32, 1, 8, 8)
    assert all(bank.dtype == torch.float32 for bank in avatar.reference.banks.tensors.values())
    assert 10 < avatar.face_width < 64


def test_a_window_renders_its_new_frames_only(renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
    frames = renderer.render_window(avatar, _window(first_frame=10, frame_count=4, context_frames=2))
    assert len(frames) == 4
    assert all(frame.shape == (64, 64, 3) and frame.dtype == np.uint8 for frame in frames)
    again = renderer.render_window(avatar, _window(first_frame=10, frame_count=4, context_frames=2))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))


def test_the_first_window_needs_no_context_and_tolerates_short_audio(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar
) -> None:
    window = _window(first_frame=0, frame_count=3, context_frames=0, lookahead=0.0)
    short = AudioWindow(
        **{**{field: getattr(window, field) for field in window.__slots__}, "samples": window.samples[:100]}
    )
    assert len(renderer.render_window(avatar, short)) == 3


def test_a_frame_gets_the_same_noise_in_every_window() -> None:
    earlier = frame_noise(seed=7, first_frame=10, num_frames=6, latent_shape=(4, 8, 8))  # frames 10..15
    later = frame_noise(seed=7, first_frame=14, num_frames=6, latent_shape=(4, 8, 8))  # frames 14..19
    assert earlier.shape == (1, 4, 6, 8, 8)
    torch.testing.assert_close(earlier[:, :, 4:], later[:, :, :2], atol=0, rtol=0)
    assert not torch.equal(later[:, :, 2], later[:, :, 3])
    assert not torch.equal(earlier, frame_noise(seed=8, first_frame=10, num_frames=6, latent_shape=(4, 8, 8)))


def test_idle_frames_move_the_portrait_by_each_pose(renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
    shift = 5
    right_and_down = IdlePose(head_offset=(shift / avatar.face_width, 2 * shift / avatar.face_width))
    poses = [IdlePose(), right_and_down, IdlePose(head_roll=4.0), IdlePose(breath=1.0)]
    frames = renderer.render_idle(avatar, poses)
    assert len(frames) == 4
    assert all(frame.shape == (64, 64, 3) and frame.dtype == np.uint8 for frame in frames)
    np.testing.assert_array_equal(frames[0], avatar.image)
    np.testing.assert_array_equal(frames[1][2 * shift :, shift:], avatar.image[: 64 - 2 * shift, : 64 - shift])
    assert not np.array_equal(frames[2], avatar.image)
    assert not np.array_equal(frames[3], avatar.image)
    assert renderer.render_idle(avatar, []) == []


def test_sessions_take_turns_on_the_model_while_idle_frames_never_wait(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = renderer.pipeline.audio_features
    assert audio is not None
    encode = audio.encoder_embeddings
    entered = threading.Semaphore(0)
    leave = threading.Event()

    def held_encoding(waveform: np.ndarray) -> torch.Tensor:
        """The first model step of a window: announces itself, then holds the model until the test lets go."""
        entered.release()
        leave.wait(timeout=60)
        return encode(waveform)

    monkeypatch.setattr(audio, "encoder_embeddings", held_encoding)
    window = _window(first_frame=10, frame_count=4, context_frames=2)
    with ThreadPoolExecutor(max_workers=3) as pool:
        try:
            first = pool.submit(renderer.render_window, avatar, window)
            assert entered.acquire(timeout=60), "the first window never reached the model"
            second = pool.submit(renderer.render_window, avatar, window)
            assert not entered.acquire(timeout=0.5), "a second window used the model while the first held it"
            idle = pool.submit(renderer.render_idle, avatar, [IdlePose()])
            assert len(idle.result(timeout=60)) == 1
        finally:
            leave.set()
        assert entered.acquire(timeout=60), "the second window never reached the model"
        assert len(first.result()) == len(second.result()) == 4


def test_windows_are_checked(renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
    window = _window(first_frame=10, frame_count=4, context_frames=2)
    wrong_rate = AudioWindow(**{**{field: getattr(window, field) for field in window.__slots__}, "fps": 25.0})
    with pytest.raises(ValueError, match=r"25\.0 fps"):
        renderer.render_window(avatar, wrong_rate)
    with pytest.raises(ValueError, match="exceeds the 32"):
        EchoMimicRenderer(renderer.pipeline, window=EchoMimicWindow(frames=30, context=3, lookahead=0.2))


def test_a_portrait_without_a_face_is_refused(renderer: EchoMimicRenderer) -> None:
    with pytest.raises(ValueError, match="face"):
        renderer.prepare_avatar(np.full((128, 128, 3), 90, np.uint8))
