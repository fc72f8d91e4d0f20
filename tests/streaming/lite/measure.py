"""Reading the mouth and eyes off rendered frames: every assertion about them is about pixels."""

from __future__ import annotations

import cv2
import numpy as np

from streaming.frames import RgbImage
from streaming.lite import LiteAvatar
from streaming.lite.face_layout import Point

DARK = 60
"""Luminance below which a pixel counts as the open mouth's cavity (the closed lips and skin are far lighter)."""


def in_frame(avatar: LiteAvatar, point: Point) -> Point:
    """A canvas point of the avatar's layout, in frame pixels at rest."""
    return point[0] - avatar.margin, point[1] - avatar.margin


def patch(frame: RgbImage, centre: Point, half_width: float, half_height: float) -> RgbImage:
    x, y = centre
    return frame[round(y - half_height) : round(y + half_height), round(x - half_width) : round(x + half_width)]


def mouth_darkness(avatar: LiteAvatar, frame: RgbImage) -> int:
    """Dark pixels in the box around the mouth: the parted lips' cavity is dark."""
    width = avatar.layout.mouth_width
    x, y = in_frame(avatar, avatar.layout.mouth_center)
    box = frame[round(y - 0.3 * width) : round(y + 0.6 * width), round(x - 0.7 * width) : round(x + 0.7 * width)]
    return int((cv2.cvtColor(np.ascontiguousarray(box), cv2.COLOR_RGB2GRAY) < DARK).sum())


def dark_pixels(pixels: np.ndarray, below: float = 80) -> int:
    """Pixels whose mean channel value is under `below`."""
    return int((pixels.mean(axis=2) < below).sum())
