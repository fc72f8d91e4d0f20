"""The painted mouth interior: teeth only where the portrait shows none of its own."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose, RgbImage
from streaming.lite import LiteAvatar, LiteRenderer
from streaming.lite.mouth_interior import MouthPalette


def with_lips_over_the_teeth(avatar: LiteAvatar) -> RgbImage:
    """The avatar's canvas with the smile's visible teeth painted over in the colour of its lips."""
    canvas = avatar.canvas.copy()
    mx, my = avatar.layout.mouth_center
    half = avatar.layout.mouth_width / 2
    lips = canvas[round(my + 0.3 * half) : round(my + 0.4 * half), round(mx - 0.2 * half) : round(mx + 0.2 * half)]
    colour = tuple(int(v) for v in np.median(lips.reshape(-1, 3), axis=0))
    cv2.ellipse(canvas, (round(mx), round(my)), (round(0.8 * half), round(0.2 * half)), 0, 0, 360, colour, -1)
    return canvas


def loud_window(renderer: LiteRenderer) -> AudioWindow:
    fps = renderer.fps
    t = np.arange(round(3 / fps * SAMPLE_RATE)) / SAMPLE_RATE
    voice = (0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 900 * t)).astype(np.float32)
    return AudioWindow(
        samples=voice,
        start_time=4 / fps,
        fps=fps,
        first_frame=5,
        frame_count=1,
        context_frames=1,
        lookahead=1 / fps,
        poses=(IdlePose(),),
    )


def test_teeth_already_in_the_portrait_are_not_painted_again(avatar: LiteAvatar) -> None:
    assert not MouthPalette.from_portrait(avatar.canvas, avatar.layout).paint_teeth


def test_closed_lips_get_painted_teeth(avatar: LiteAvatar) -> None:
    assert MouthPalette.from_portrait(with_lips_over_the_teeth(avatar), avatar.layout).paint_teeth


def test_painted_teeth_show_as_light_pixels_in_the_opening(renderer: LiteRenderer, avatar: LiteAvatar) -> None:
    closed_lips = dataclasses.replace(avatar, canvas=with_lips_over_the_teeth(avatar))
    mx, my = (v - avatar.margin for v in avatar.layout.mouth_center)
    half = avatar.layout.mouth_width / 2
    rows, cols = slice(round(my - 0.3 * half), round(my + 0.8 * half)), slice(round(mx - half), round(mx + half))
    window = loud_window(renderer)
    assert renderer.driver.shapes(window)[0].opening > 0.6

    def light_pixels_in_the_opening(paint_teeth: bool) -> int:
        candidate = dataclasses.replace(
            closed_lips, palette=dataclasses.replace(avatar.palette, paint_teeth=paint_teeth)
        )
        (rest,) = renderer.render_idle(candidate, [IdlePose()])
        (opened,) = renderer.render_window(candidate, window)
        changed = np.abs(opened[rows, cols].astype(np.int16) - rest[rows, cols]).max(axis=2) > 30
        light = opened[rows, cols].mean(axis=2) > 120
        return int((changed & light).sum())

    painted, unpainted = light_pixels_in_the_opening(True), light_pixels_in_the_opening(False)
    assert painted > unpainted + 100
