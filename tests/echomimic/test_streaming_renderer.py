"""Live EchoMimic on tiny weights: sessions, pinned context, speech↔idle transitions, interruption, memory.

The windows and poses are the streaming package's own types, cut by its `WindowCutter` as a live stream cuts them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import echomimic.window_batcher
from echomimic.acceleration.host_transfer import PendingFrames
from echomimic.acceleration.profiles import QUALITY
from echomimic.live_avatar import EchoMimicAvatar, idle_frame
from echomimic.live_sampler import WindowInputs
from echomimic.live_session import EchoMimicSession
from echomimic.streaming_renderer import EchoMimicRenderer, frame_noise
from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose, RgbImage
from streaming.idle import IdleMotion
from streaming.lite.eyelids import PortraitEyelids
from streaming.renderer import WindowSpec
from streaming.windowing import WindowCutter
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

PORTRAIT = Path(__file__).parents[2] / "streaming/assets/default_portrait.png"
FPS = 24.0
WINDOW = WindowSpec(frames=4, context=2, lookahead=0.08, onset_frames=2)
IDLE_FRAMES = 6
"""Every test session starts with this many idle frames on screen, as a live session does before anyone speaks."""
PINNED_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def renderer(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EchoMimicRenderer:
    weights_dir = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    return EchoMimicRenderer.from_weights(
        weights_dir,
        device="cpu",
        profile=replace(QUALITY, size=64, num_inference_steps=2),
        fps=FPS,
        window=WINDOW,
        eyelids=PortraitEyelids.find,
        audio_segment_seconds=2.0,
    )


@pytest.fixture(scope="module")
def avatar(renderer: EchoMimicRenderer) -> EchoMimicAvatar:
    return renderer.prepare_avatar(np.asarray(Image.open(PORTRAIT).convert("RGB")))


class Speaker:
    """Cuts a voiced signal into the windows a live stream would hand one session, after `IDLE_FRAMES` idle."""

    def __init__(self, session: EchoMimicSession, seconds: float = 3.0) -> None:
        self.session = session
        self.motion = IdleMotion(seed=3)
        self.cutter = WindowCutter(WINDOW, FPS, self.pose)
        time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * time)
        self.cutter.append((0.3 * syllables * np.sin(2 * np.pi * 180 * time)).astype(np.float32))
        self.idle = session.render_idle(0, [self.pose(index) for index in range(IDLE_FRAMES)])
        self.cutter.skip(IDLE_FRAMES)

    def pose(self, index: int) -> IdlePose:
        return self.motion.pose(index, FPS)

    def window(self, frames: int = WINDOW.frames, *, ends_speech: bool = False) -> AudioWindow:
        return self.cutter.cut(frames, ends_speech=ends_speech)

    def speak(self, frames: int = WINDOW.frames, *, ends_speech: bool = False) -> list[RgbImage]:
        return self.session.render_window(self.window(frames, ends_speech=ends_speech))


def context_drift(session: EchoMimicSession, windows: int) -> float:
    """Largest gap between a window's pinned context latents and the latents its predecessor showed there."""
    speaker = Speaker(session)
    speaker.speak(WINDOW.first_window_frames)
    drift = 0.0
    for _ in range(windows):
        shown = session.last_window_latents
        assert shown is not None
        speaker.speak()
        latents = session.last_window_latents
        assert latents is not None
        drift = max(drift, float((latents[:, :, : WINDOW.context] - shown[:, :, -WINDOW.context :]).abs().max()))
    return drift


def test_the_renderer_describes_itself(renderer: EchoMimicRenderer) -> None:
    assert renderer.name == "echomimic"
    assert renderer.fps == FPS
    assert renderer.frame_size == (64, 64)
    assert renderer.window == WINDOW
    assert renderer.parallel_renders == 1
    assert renderer.device_memory() is None, "no device memory to count on the CPU"


def test_the_avatar_caches_every_per_portrait_tensor(renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
    assert avatar.image.shape == (64, 64, 3) and avatar.image.dtype == np.uint8
    reference = avatar.reference
    assert reference.latents.shape == (1, 4, 8, 8)
    assert reference.face_features.shape == (1, 32, 1, 8, 8)
    readers = set(renderer.pipeline.denoising_unet.bank_order)
    assert set(reference.banks.projected) == set(reference.banks.tensors) == readers
    assert 10 < avatar.face_width < 64
    assert avatar.eyelids is not None


def test_idle_frames_blink_and_move_by_each_pose(avatar: EchoMimicAvatar) -> None:
    shift = 5
    right_and_down = IdlePose(head_offset=(shift / avatar.face_width, 2 * shift / avatar.face_width))
    still, moved, rolled, breathing, blinking = (
        idle_frame(avatar, pose)
        for pose in [IdlePose(), right_and_down, IdlePose(head_roll=4.0), IdlePose(breath=1.0), IdlePose(blink=1.0)]
    )
    np.testing.assert_array_equal(still, avatar.image)
    np.testing.assert_array_equal(moved[2 * shift :, shift:], avatar.image[: 64 - 2 * shift, : 64 - shift])
    assert not np.array_equal(rolled, avatar.image)
    assert not np.array_equal(breathing, avatar.image)
    changed_rows = np.flatnonzero(np.any(blinking != avatar.image, axis=(1, 2)))
    assert len(changed_rows) > 0 and changed_rows.max() < 64 * 0.6, "a blink changes the eyes, not the mouth"


def test_a_window_renders_its_new_frames_reproducibly(renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
    first = Speaker(renderer.open_session(avatar)).speak()
    again = Speaker(renderer.open_session(avatar)).speak()
    assert len(first) == WINDOW.frames
    assert all(frame.shape == (64, 64, 3) and frame.dtype == np.uint8 for frame in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_each_window_continues_the_latents_already_shown(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert context_drift(renderer.open_session(avatar), windows=3) < PINNED_TOLERANCE

    pinned_denoise = echomimic.window_batcher.denoise_windows

    def unpinned(
        pipeline: Any, unet: Any, windows: list[WindowInputs], steps: int, guidance: float, interval: int
    ) -> list[torch.Tensor | None]:
        unpinned_windows = [replace(window, pinned=None) for window in windows]
        return pinned_denoise(pipeline, unet, unpinned_windows, steps, guidance, interval)

    monkeypatch.setattr(echomimic.window_batcher, "denoise_windows", unpinned)
    assert context_drift(renderer.open_session(avatar), windows=1) > 100 * PINNED_TOLERANCE


def test_the_profile_deep_feature_interval_reaches_the_sampler(
    conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights_dir = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    profile = replace(QUALITY, size=64, num_inference_steps=2, deep_feature_interval=2)
    reusing = EchoMimicRenderer.from_weights(weights_dir, device="cpu", profile=profile, fps=FPS, window=WINDOW)
    sampled = echomimic.window_batcher.denoise_windows
    intervals: list[int] = []

    def recording(pipeline: Any, unet: Any, windows: list[WindowInputs], *settings: Any) -> list[torch.Tensor | None]:
        intervals.append(settings[-1])
        return sampled(pipeline, unet, windows, *settings)

    monkeypatch.setattr(echomimic.window_batcher, "denoise_windows", recording)
    avatar = reusing.prepare_avatar(np.asarray(Image.open(PORTRAIT).convert("RGB")))
    Speaker(reusing.open_session(avatar)).speak(WINDOW.first_window_frames)
    assert intervals and set(intervals) == {2}


def test_an_utterance_starts_from_the_idle_frames_on_screen(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar
) -> None:
    session = renderer.open_session(avatar)
    speaker = Speaker(session)
    speaker.speak(WINDOW.first_window_frames)
    latents = session.last_window_latents
    assert latents is not None
    on_screen = renderer.pipeline.encode_frames(np.stack(speaker.idle[-WINDOW.context :]))  # [2, 4, 8, 8]
    torch.testing.assert_close(latents[0, :, : WINDOW.context], on_screen.transpose(0, 1), atol=1e-6, rtol=0)


def test_an_utterance_ends_on_the_idle_pose_and_fades_into_idle(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar
) -> None:
    session = renderer.open_session(avatar)
    speaker = Speaker(session)
    speaker.speak(WINDOW.first_window_frames)
    closing = speaker.window(ends_speech=True)
    spoken = session.render_window(closing)
    latents = session.last_window_latents
    assert latents is not None
    tail = renderer.idle_tail_frames
    idle_pose = renderer.pipeline.encode_frames(np.stack([idle_frame(avatar, pose) for pose in closing.poses[-tail:]]))
    torch.testing.assert_close(latents[0, :, -tail:], idle_pose.transpose(0, 1), atol=1e-6, rtol=0)

    after = closing.first_frame + closing.frame_count
    poses = [speaker.pose(index) for index in range(after, after + renderer.blend_frames + 2)]
    faded = session.render_idle(after, poses)
    targets = [idle_frame(avatar, pose).astype(np.float32) for pose in poses]
    for offset, (frame, target) in enumerate(zip(faded, targets, strict=True)):
        weight = min(1.0, (offset + 1) / (renderer.blend_frames + 1))
        expected = (1 - weight) * spoken[-1].astype(np.float32) + weight * target
        assert np.abs(frame.astype(np.float32) - expected).max() <= 1.0


def test_an_interruption_stops_the_window_at_the_next_step_and_fades_from_what_was_shown(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = renderer.open_session(avatar)
    speaker = Speaker(session)
    shown = speaker.speak(WINDOW.first_window_frames)
    resume = IDLE_FRAMES + WINDOW.first_window_frames
    unet = renderer.pipeline.denoising_unet
    steps: list[int] = []
    forward = unet.forward

    def interrupted_after_one_step(*args: Any, **kwargs: Any) -> torch.Tensor:
        steps.append(1)
        session.cancel()  # as the stream does from the event loop, while the render runs
        output: torch.Tensor = forward(*args, **kwargs)
        return output

    monkeypatch.setattr(unet, "forward", interrupted_after_one_step)
    assert session.render_window(speaker.window()) == []
    assert len(steps) == 1, "the window ran on past the step during which it was interrupted"
    monkeypatch.undo()
    assert session.render_window(speaker.window()) == [], "a window started before the reset drew frames"
    session.reset(resume, shown[-1])

    first_idle = session.render_idle(resume, [speaker.pose(resume)])[0]
    weight = 1 / (renderer.blend_frames + 1)
    expected = (1 - weight) * shown[-1].astype(np.float32) + weight * idle_frame(avatar, speaker.pose(resume))
    assert np.abs(first_idle.astype(np.float32) - expected).max() <= 1.0


def test_a_session_holds_the_same_memory_after_many_windows(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar
) -> None:
    cheap = EchoMimicRenderer(
        renderer.pipeline, size=64, fps=FPS, window=WINDOW, num_inference_steps=1, audio_segment_seconds=1.0
    )
    session = cheap.open_session(avatar)
    speaker = Speaker(session, seconds=12.0)
    held = []
    for _ in range(60):
        speaker.speak()
        held.append(session.held_bytes)
    assert session.windows_rendered == 60
    assert held[-1] == held[10], f"session memory grew from {held[10]} to {held[-1]} bytes"


def test_sessions_take_turns_on_the_model_while_idle_frames_never_wait(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Semaphore(0)
    leave = threading.Event()
    sample = renderer.pipeline.denoising_unet.forward

    def held_sampling(*args: Any, **kwargs: Any) -> torch.Tensor:
        """A window's first UNet call: announces itself, then holds the model until the test lets go."""
        entered.release()
        leave.wait(timeout=60)
        output: torch.Tensor = sample(*args, **kwargs)
        return output

    speakers = [Speaker(renderer.open_session(avatar)) for _ in range(2)]
    windows = [speaker.window() for speaker in speakers]
    monkeypatch.setattr(renderer.pipeline.denoising_unet, "forward", held_sampling)
    with ThreadPoolExecutor(max_workers=3) as pool:
        try:
            first = pool.submit(speakers[0].session.render_window, windows[0])
            assert entered.acquire(timeout=60), "the first window never reached the model"
            second = pool.submit(speakers[1].session.render_window, windows[1])
            assert not entered.acquire(timeout=0.5), "a second window used the model while the first held it"
            idle = pool.submit(speakers[1].session.render_idle, 100, [IdlePose()])
            assert len(idle.result(timeout=60)) == 1
        finally:
            leave.set()
        assert len(first.result()) == len(second.result()) == WINDOW.frames


def test_windows_of_sessions_ready_together_run_as_one_batch_with_the_same_result(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = Speaker(renderer.open_session(avatar))
    alone.speak(WINDOW.first_window_frames)
    expected = alone.session.render_window(alone.window())
    expected_latents = alone.session.last_window_latents
    assert expected_latents is not None

    blocker, first, second = (Speaker(renderer.open_session(avatar)) for _ in range(3))
    for speaker in (first, second):
        speaker.speak(WINDOW.first_window_frames)
    windows = [speaker.window() for speaker in (blocker, first, second)]
    entered, leave = threading.Event(), threading.Event()
    forward = renderer.pipeline.denoising_unet.forward

    def held_once(*args: Any, **kwargs: Any) -> torch.Tensor:
        if not entered.is_set():
            entered.set()
            leave.wait(timeout=60)
        output: torch.Tensor = forward(*args, **kwargs)
        return output

    monkeypatch.setattr(renderer.pipeline.denoising_unet, "forward", held_once)
    with ThreadPoolExecutor(max_workers=3) as pool:
        try:
            held = pool.submit(blocker.session.render_window, windows[0])
            assert entered.wait(timeout=60)
            batched = [
                pool.submit(speaker.session.render_window, window)
                for speaker, window in zip((first, second), windows[1:], strict=True)
            ]
            for _ in range(600):
                if renderer.batcher.waiting == 2:
                    break
                threading.Event().wait(0.05)
        finally:
            leave.set()
        assert len(held.result()) == WINDOW.frames
        results = [future.result() for future in batched]
    assert renderer.batcher.batch_sizes[-1] == 2, "the two waiting windows did not run as one batch"
    for speaker, frames in zip((first, second), results, strict=True):
        latents = speaker.session.last_window_latents
        assert latents is not None
        torch.testing.assert_close(latents, expected_latents, atol=1e-4 * float(expected_latents.abs().max()), rtol=0)
        assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(frames, expected, strict=True)) <= 2


def test_the_next_batch_reaches_the_model_while_frames_still_cross_to_the_host(
    renderer: EchoMimicRenderer, avatar: EchoMimicAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    copying, copied = threading.Event(), threading.Event()
    start_transfer = echomimic.window_batcher.start_frame_transfer

    class SlowCopy:
        """The first window's frames take until the test says so to reach the host."""

        def __init__(self, pending: PendingFrames) -> None:
            self.pending = pending

        def wait(self) -> RgbImage:
            copying.set()
            copied.wait(timeout=60)
            return self.pending.wait()

    def slow_first_copy(pictures: torch.Tensor) -> PendingFrames | SlowCopy:
        pending = start_transfer(pictures)
        return pending if copying.is_set() else SlowCopy(pending)

    monkeypatch.setattr(echomimic.window_batcher, "start_frame_transfer", slow_first_copy)
    speakers = [Speaker(renderer.open_session(avatar)) for _ in range(2)]
    windows = [speaker.window() for speaker in speakers]
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            first = pool.submit(speakers[0].session.render_window, windows[0])
            assert copying.wait(timeout=60), "the first window never started its copy to the host"
            second = pool.submit(speakers[1].session.render_window, windows[1])
            assert len(second.result(timeout=60)) == WINDOW.frames, "the second window waited for the first's copy"
            assert not first.done()
        finally:
            copied.set()
        assert len(first.result(timeout=60)) == WINDOW.frames


def test_a_frame_gets_the_same_noise_in_every_window() -> None:
    earlier = frame_noise(seed=7, first_frame=10, num_frames=6, latent_shape=(4, 8, 8))  # frames 10..15
    later = frame_noise(seed=7, first_frame=14, num_frames=6, latent_shape=(4, 8, 8))  # frames 14..19
    assert earlier.shape == (1, 4, 6, 8, 8)
    torch.testing.assert_close(earlier[:, :, 4:], later[:, :, :2], atol=0, rtol=0)
    assert not torch.equal(later[:, :, 2], later[:, :, 3])
    assert not torch.equal(earlier, frame_noise(seed=8, first_frame=10, num_frames=6, latent_shape=(4, 8, 8)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda pipeline: EchoMimicRenderer(pipeline, window=WindowSpec(frames=30, context=3, lookahead=0.2)), "32"),
        (lambda pipeline: EchoMimicRenderer(pipeline, size=100), "multiple of 8"),
    ],
)
def test_settings_are_checked(
    renderer: EchoMimicRenderer, build: Callable[[Any], EchoMimicRenderer], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(renderer.pipeline)


def test_windows_at_another_frame_rate_are_refused(renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
    window = Speaker(renderer.open_session(avatar)).window()
    wrong_rate = AudioWindow(**{**{field: getattr(window, field) for field in window.__slots__}, "fps": 25.0})
    with pytest.raises(ValueError, match=r"25\.0 fps"):
        renderer.open_session(avatar).render_window(wrong_rate)


def test_a_portrait_without_a_face_is_refused(renderer: EchoMimicRenderer) -> None:
    with pytest.raises(ValueError, match="face"):
        renderer.prepare_avatar(np.full((128, 128, 3), 90, np.uint8))
