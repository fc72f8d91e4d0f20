"""A cheap renderer for the server tests: a grey card with a dark mouth bar whose height follows the voice.

The frames are large flat shapes, so they survive VP8 and H.264 and a test can read the mouth opening back
from decoded video. Preparing an avatar runs the real face detector, so avatar uploads are checked for real.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose, RgbImage
from streaming.lite.face_layout import detect_face
from streaming.renderer import RenderSession, StatelessSession, WindowSpec

FRAME_SIZE = (160, 160)
MOUTH_ROWS = slice(96, 144)
MOUTH_COLUMNS = slice(48, 112)
FULL_SCALE_RMS = 0.08
"""Speech this loud (RMS) or louder opens the mouth all the way."""
CARD_GREY = 180


@dataclass(frozen=True)
class FakeAvatar:
    portrait_shape: tuple[int, ...]


class LoudnessRenderer:
    """Satisfies `streaming.renderer.Renderer[FakeAvatar]`."""

    name = "fake"

    def __init__(self, fps: float = 25.0) -> None:
        self.fps = fps
        self.frame_size = FRAME_SIZE
        self.window = WindowSpec(frames=1, context=0, lookahead=0.0)

    def prepare_avatar(self, portrait: RgbImage) -> FakeAvatar:
        detect_face(portrait)
        return FakeAvatar(portrait.shape)

    def open_session(self, avatar: FakeAvatar) -> RenderSession:
        return StatelessSession(self, avatar)

    def render_window(self, avatar: FakeAvatar, window: AudioWindow) -> list[RgbImage]:
        frames = []
        for index in range(window.first_frame, window.first_frame + window.frame_count):
            start = max(0, window.sample_offset(window.frame_time(index)))
            audio = window.samples[start : start + round(SAMPLE_RATE / window.fps)]
            rms = float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
            frames.append(_draw(min(1.0, rms / FULL_SCALE_RMS)))
        return frames

    def render_idle(self, avatar: FakeAvatar, poses: Sequence[IdlePose]) -> list[RgbImage]:
        return [_draw(0.0) for _ in poses]


class SlowRenderer(LoudnessRenderer):
    """A `LoudnessRenderer` that takes at least `seconds_per_frame` to draw each frame, on one render lane, and
    counts the avatars it prepares (admission must refuse before preparing one)."""

    parallel_renders = 1

    def __init__(self, seconds_per_frame: float, fps: float = 25.0) -> None:
        super().__init__(fps)
        self.seconds_per_frame = seconds_per_frame
        self.avatars_prepared = 0

    def prepare_avatar(self, portrait: RgbImage) -> FakeAvatar:
        self.avatars_prepared += 1
        return super().prepare_avatar(portrait)

    def render_window(self, avatar: FakeAvatar, window: AudioWindow) -> list[RgbImage]:
        time.sleep(self.seconds_per_frame * window.frame_count)
        return super().render_window(avatar, window)

    def render_idle(self, avatar: FakeAvatar, poses: Sequence[IdlePose]) -> list[RgbImage]:
        time.sleep(self.seconds_per_frame * len(poses))
        return super().render_idle(avatar, poses)


def _draw(opening: float) -> RgbImage:
    width, height = FRAME_SIZE
    image = np.full((height, width, 3), CARD_GREY, dtype=np.uint8)
    rows = MOUTH_ROWS.stop - MOUTH_ROWS.start
    open_rows = round(opening * rows)
    top = MOUTH_ROWS.start + (rows - open_rows) // 2
    image[top : top + open_rows, MOUTH_COLUMNS] = 20
    return image


def mouth_opening(image: RgbImage) -> float:
    """Share of the mouth box that is dark, 0 (closed) to 1 (wide open), read from a decoded frame."""
    mouth = image[MOUTH_ROWS, MOUTH_COLUMNS].mean(axis=2)
    return float(np.mean(mouth < CARD_GREY / 2))
