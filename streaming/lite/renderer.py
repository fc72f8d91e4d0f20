"""The `lite` renderer: animates any frontal portrait on one CPU core, with nothing to download.

Preparing an avatar finds the face, frames it and builds every warp's fixed parts. Drawing a frame is then a
handful of small remaps on a copy of the framed portrait: mouth (opened by the audio), eyelids (from the pose's
blink), then head and breathing for the whole frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streaming.array_bytes import array_bytes
from streaming.frames import AudioWindow, IdlePose, RgbImage
from streaming.lite.eyes import EyeRig
from streaming.lite.face_layout import FaceLayout, detect_face, locate_features
from streaming.lite.head_motion import HeadRig
from streaming.lite.mouth_driver import CLOSED, MouthDriver, MouthShape
from streaming.lite.mouth_interior import MouthPalette, paint_interior
from streaming.lite.mouth_warp import MouthRig
from streaming.lite.portrait_crop import crop_around_face
from streaming.renderer import AvatarMemory, RenderSession, StatelessSession, WindowSpec

_MIN_PORTRAIT_SIDE = 64
_STILL = 0.005
"""Mouth parameters below this leave the portrait's own mouth untouched."""


@dataclass(frozen=True, slots=True)
class LiteAvatar:
    """Everything about one portrait that does not change from frame to frame. Immutable, so one avatar can
    serve several sessions at once."""

    canvas: RgbImage
    """The framed portrait plus `margin` pixels of picture on every side: frame pixel (x, y) at rest is canvas
    pixel (x + margin, y + margin)."""
    margin: int
    layout: FaceLayout
    """The face in canvas pixels."""
    mouth: MouthRig
    palette: MouthPalette
    eyes: tuple[EyeRig, EyeRig]
    head: HeadRig


class LiteRenderer:
    """Satisfies `streaming.renderer.Renderer[LiteAvatar]`. Each frame depends only on its window or pose, so a
    session keeps no state of its own."""

    name = "lite"

    def __init__(self, fps: float = 25.0, frame_size: tuple[int, int] = (512, 512)) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        if min(frame_size) < 64:
            raise ValueError(f"frame size must be at least 64x64, not {frame_size[0]}x{frame_size[1]}")
        self.fps = fps
        self.frame_size = frame_size
        # One new frame per window with one frame of context and 40 ms of look-ahead: the mouth lags the voice
        # by at most two frame periods, and the follower still sees each frame's neighbours. A frame is drawn from
        # its own audio and pose alone, so under overload every second frame can be left out (frame stride 2).
        self.window = WindowSpec(frames=1, context=1, lookahead=0.04, max_frame_stride=2)
        self.driver = MouthDriver()
        self.parallel_renders = usable_cores()
        """Frames are drawn in the sessions' worker threads, and OpenCV's remaps release the GIL: as many renders
        run at once as the process has cores."""

    def prepare_avatar(self, portrait: RgbImage) -> LiteAvatar:
        _check_portrait(portrait)
        crop = crop_around_face(portrait, detect_face(portrait), self.frame_size)
        layout = locate_features(crop.canvas, crop.face_box)
        canvas_size = (crop.canvas.shape[1], crop.canvas.shape[0])
        return LiteAvatar(
            canvas=crop.canvas,
            margin=crop.margin,
            layout=layout,
            mouth=MouthRig.build(layout, canvas_size),
            palette=MouthPalette.from_portrait(crop.canvas, layout),
            eyes=(
                EyeRig.build(layout.left_eye, layout.roll, canvas_size),
                EyeRig.build(layout.right_eye, layout.roll, canvas_size),
            ),
            head=HeadRig.build(layout, self.frame_size, crop.margin),
        )

    def open_session(self, avatar: LiteAvatar) -> RenderSession:
        return StatelessSession(self, avatar)

    def avatar_memory(self, avatar: LiteAvatar) -> AvatarMemory:
        return AvatarMemory(host_bytes=array_bytes(avatar))

    def render_window(self, avatar: LiteAvatar, window: AudioWindow) -> list[RgbImage]:
        if len(window.poses) != window.frame_count:
            raise ValueError(f"window has {len(window.poses)} poses for {window.frame_count} frames")
        # The mouth follower runs over every frame (it is cheap and smooths across them); only drawing is thinned.
        shapes = self.driver.shapes(window)
        offsets = [index - window.first_frame for index in window.drawn_frames]
        return [_draw(avatar, window.poses[offset], shapes[offset]) for offset in offsets]

    def render_idle(self, avatar: LiteAvatar, poses: Sequence[IdlePose]) -> list[RgbImage]:
        return [_draw(avatar, pose, CLOSED) for pose in poses]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _draw(avatar: LiteAvatar, pose: IdlePose, mouth: MouthShape) -> RgbImage:
    canvas = avatar.canvas.copy()
    if mouth.opening > _STILL or abs(mouth.spread) > _STILL:
        box, cavity = avatar.mouth.warp(canvas, mouth)
        paint_interior(box, cavity, avatar.palette, avatar.layout.mouth_width)
        canvas[avatar.mouth.box] = box
    for eye in avatar.eyes:
        eye.close(canvas, pose.blink)
    return avatar.head.move(canvas, pose)


def _check_portrait(portrait: RgbImage) -> None:
    if not isinstance(portrait, np.ndarray) or portrait.dtype != np.uint8 or portrait.ndim != 3:
        raise ValueError("the portrait must be an RGB image (height x width x 3, 8 bits per channel)")
    height, width, channels = portrait.shape
    if channels != 3:
        raise ValueError(f"the portrait must have 3 colour channels (RGB), not {channels}")
    if min(height, width) < _MIN_PORTRAIT_SIDE:
        raise ValueError(
            f"the portrait is {width}x{height} pixels; use one at least {_MIN_PORTRAIT_SIDE} pixels on each side"
        )
