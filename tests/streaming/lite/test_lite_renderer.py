"""The renderer end to end, judged from the frames it draws: the mouth follows the voice, eyes blink, the head
moves, and a face at rest stays still."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE, AudioWindow, FloatAudio, IdlePose, RgbImage
from streaming.lite import LiteAvatar, LiteRenderer, default_portrait_path, load_portrait
from streaming.renderer import Renderer
from tests.streaming.lite.clips import cut_into_windows, vowel
from tests.streaming.lite.measure import dark_pixels, in_frame, mouth_darkness, patch


def render_clip(renderer: LiteRenderer, avatar: LiteAvatar, clip: FloatAudio) -> list[RgbImage]:
    windows = cut_into_windows(clip, renderer.window, renderer.fps)
    return [frame for window in windows for frame in renderer.render_window(avatar, window)]


def test_satisfies_the_renderer_protocol(renderer: LiteRenderer) -> None:
    as_protocol: Renderer[LiteAvatar] = renderer
    assert as_protocol.name == "lite"
    assert as_protocol.fps == 25.0
    assert as_protocol.frame_size == (512, 512)
    assert as_protocol.window.context == 1
    assert 1 <= as_protocol.window.frames <= 2
    assert 0 < as_protocol.window.lookahead <= 0.05


@pytest.mark.parametrize("frame_size", [(512, 512), (320, 240), (200, 360)])
def test_render_window_returns_one_frame_of_frame_size_per_pose(frame_size: tuple[int, int]) -> None:
    renderer = LiteRenderer(frame_size=frame_size)
    avatar = renderer.prepare_avatar(load_portrait(default_portrait_path()))
    fps = renderer.fps
    window = AudioWindow(
        samples=np.zeros(round(4 / fps * SAMPLE_RATE) + 640, dtype=np.float32),
        start_time=6 / fps,
        fps=fps,
        first_frame=7,
        frame_count=3,
        context_frames=1,
        lookahead=0.04,
        poses=(IdlePose(), IdlePose(blink=1.0), IdlePose(head_roll=2.0)),
    )
    frames = renderer.render_window(avatar, window)
    width, height = frame_size
    assert len(frames) == 3
    assert all(frame.shape == (height, width, 3) and frame.dtype == np.uint8 for frame in frames)


def test_render_window_refuses_poses_that_do_not_match_the_frames(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    window = AudioWindow(
        samples=np.zeros(3 * 640, dtype=np.float32),
        start_time=0.0,
        fps=25.0,
        first_frame=1,
        frame_count=1,
        context_frames=1,
        lookahead=0.04,
        poses=(IdlePose(), IdlePose()),
    )
    with pytest.raises(ValueError, match="2 poses for 1 frames"):
        renderer.render_window(avatar, window)


def test_mouth_opens_further_as_the_voice_gets_louder(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    rest = mouth_darkness(avatar, renderer.render_idle(avatar, [IdlePose()])[0])
    darkness = []
    for level in (-42, -34, -26, -18):
        frames = render_clip(renderer, avatar, vowel(level, 0.4))
        darkness.append(mouth_darkness(avatar, frames[len(frames) // 2]))
    assert rest < darkness[0]
    assert all(later > earlier for earlier, later in pairwise(darkness))
    assert darkness[-1] > rest + 600


def test_silence_renders_the_closed_mouth(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    still = renderer.render_idle(avatar, [IdlePose()])[0]
    frames = render_clip(renderer, avatar, np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    assert all(np.array_equal(frame, still) for frame in frames)


def test_speech_moves_the_mouth_far_more_than_silence(
    renderer: LiteRenderer, avatar: LiteAvatar, speech_clip: FloatAudio
) -> None:
    rest = mouth_darkness(avatar, renderer.render_idle(avatar, [IdlePose()])[0])
    spoken = np.array([mouth_darkness(avatar, frame) - rest for frame in render_clip(renderer, avatar, speech_clip)])
    silent = np.array(
        [mouth_darkness(avatar, frame) - rest for frame in render_clip(renderer, avatar, 0 * speech_clip)]
    )
    assert np.abs(silent).max() == 0
    assert spoken.mean() > 400
    # Lips open and close with the syllables: most frames open wide, some close in between, and the opening
    # changes a lot from frame to frame.
    assert np.mean(spoken > 300) > 0.5
    assert np.mean(spoken < 150) > 0.05
    assert np.abs(np.diff(spoken)).mean() > 100


def test_idle_blink_closes_the_eyes_and_leaves_the_mouth_alone(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    open_eyes, half_shut, shut = renderer.render_idle(avatar, [IdlePose(), IdlePose(blink=0.5), IdlePose(blink=1.0)])
    layout = avatar.layout
    for eye in (layout.left_eye, layout.right_eye):
        centre = in_frame(avatar, eye.center)
        before, half, after = (
            patch(frame, centre, eye.half_width, eye.half_height).astype(np.int16)
            for frame in (open_eyes, half_shut, shut)
        )
        assert 0 < np.abs(half - before).mean() < np.abs(after - before).mean()
        assert np.abs(after - before).mean() > 10
        # The dark iris and pupil disappear under the lid's skin.
        assert dark_pixels(after) < 0.7 * dark_pixels(before)

    mouth = in_frame(avatar, layout.mouth_center)
    mouths = [patch(frame, mouth, layout.mouth_width, layout.mouth_width) for frame in (open_eyes, half_shut, shut)]
    assert all(np.array_equal(mouths[0], other) for other in mouths[1:])


def test_idle_motion_moves_the_frame_and_rest_is_the_still_portrait(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    still, swayed, rolled, breathing = renderer.render_idle(
        avatar,
        [IdlePose(), IdlePose(head_offset=(0.02, -0.01)), IdlePose(head_roll=1.5), IdlePose(breath=1.0)],
    )
    m = avatar.margin
    assert np.array_equal(still, avatar.canvas[m:-m, m:-m])
    for moved in (swayed, rolled, breathing):
        assert np.abs(moved.astype(np.int16) - still).mean() > 1.0
        # Moving the head does not open the mouth.
        assert abs(mouth_darkness(avatar, moved) - mouth_darkness(avatar, still)) < 40
    # The head sways; the shoulders at the bottom of the frame stay put.
    bottom = slice(still.shape[0] - 20, still.shape[0])
    assert np.abs(swayed[bottom].astype(np.int16) - still[bottom]).mean() < 0.5


def test_rendering_does_not_change_the_avatar(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    canvas = avatar.canvas.copy()
    render_clip(renderer, avatar, vowel(-20, 0.2))
    renderer.render_idle(avatar, [IdlePose(blink=1.0, head_roll=1.0)])
    assert np.array_equal(avatar.canvas, canvas)
