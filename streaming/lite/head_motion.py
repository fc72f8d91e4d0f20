"""Head sway, roll and breathing: one smooth backward map from the output frame into the canvas.

The head moves as a rigid body (offset, then roll about the neck) above the chin; below it the motion fades
out over the neck so the shoulders stay put. Breathing is a tiny vertical stretch anchored at the frame's bottom
edge, lifting shoulders and head together. The canvas carries a margin of real picture around the frame, so the
motion never pulls in an empty border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming.frames import IdlePose, RgbImage
from streaming.lite.face_layout import FaceLayout
from streaming.lite.remap import remap
from streaming.lite.smoothstep import smoothstep

Grid = npt.NDArray[np.floating[Any]]
"""Per-pixel values; float32 wherever they feed `cv2.remap`."""

BREATH_LIFT = 0.004
"""Vertical stretch at the top of the frame at full breath, as a fraction of the frame height."""
_NECK = 0.5
"""Below the chin, the head's motion fades out over this many face widths."""


@dataclass(frozen=True, slots=True)
class HeadRig:
    """The frame-to-canvas map's fixed parts, prepared once per avatar; `move` is the per-frame work."""

    margin: int
    frame_size: tuple[int, int]
    columns: Grid
    """Canvas x of every frame column at rest, as a 1 x width row."""
    rows: Grid
    """Canvas y of every frame row at rest, as a height x 1 column."""
    head_weight: Grid
    """Per frame row: 1 where the head moves rigidly, fading to 0 at the shoulders."""
    pivot: tuple[float, float]
    """Canvas point the head rolls about: the top of the neck."""
    face_width: float

    @classmethod
    def build(cls, layout: FaceLayout, frame_size: tuple[int, int], margin: int) -> HeadRig:
        width, height = frame_size
        rows = np.arange(height, dtype=np.float32)[:, None] + margin
        fade = smoothstep((rows - layout.chin[1]) / (_NECK * layout.face_width))
        return cls(
            margin=margin,
            frame_size=frame_size,
            columns=np.arange(width, dtype=np.float32)[None, :] + margin,
            rows=rows,
            head_weight=(1 - fade).astype(np.float32),
            pivot=layout.chin,
            face_width=layout.face_width,
        )

    def move(self, canvas: RgbImage, pose: IdlePose) -> RgbImage:
        """The frame cut from `canvas` with the head and body in `pose`."""
        width, height = self.frame_size
        m = self.margin
        # Plain floats: a NumPy float64 in the pose would otherwise promote the float32 maps.
        offset_x, offset_y = float(pose.head_offset[0]), float(pose.head_offset[1])
        roll, breath = float(pose.head_roll), float(pose.breath)
        if offset_x == 0 and offset_y == 0 and roll == 0 and breath == 0:
            return canvas[m : m + height, m : m + width].copy()

        # The head's source point for output (x, y) is the inverse of "roll about the pivot, then shift":
        #   head_x = px + cos * (x - px - shift_x) + sin * (y - py - shift_y)
        #   head_y = py - sin * (x - px - shift_x) + cos * (y - py - shift_y)
        # blended with (x, y) itself by the row's weight. Both are (row term) * x + (column term), so each map is
        # one broadcast multiply-add over the frame.
        angle = math.radians(roll)
        cos, sin = math.cos(angle), math.sin(angle)
        px, py = self.pivot
        shift_x, shift_y = offset_x * self.face_width, offset_y * self.face_width
        y, w = self.rows, self.head_weight
        rel_y = y - py - shift_y
        x_slope = 1 + w * (cos - 1)
        x_base = w * (px - cos * (px + shift_x) + sin * rel_y)
        y_slope = -w * sin
        y_base = y + w * (py + sin * (px + shift_x) + cos * rel_y - y)
        # Breathing: content moves up in proportion to its height above the frame's bottom edge.
        y_base = y_base + breath * BREATH_LIFT * (m + height - y)
        x = self.columns
        return remap(canvas, x * x_slope + x_base, x * y_slope + y_base)
