"""Blinks: the upper eyelid slides down over the eye.

For each eye, a backward map over a small box: between the brow and the lid's current edge the output samples the
lid skin (from brow to the open lid's edge) stretched downward, so the lashes at the lid's edge travel with it;
below the edge the eye shows as it is. At full closure the edge meets a line just under the eye's centre. The box
edges and the brow never move, and a thin shadow along the travelling edge reads as lashes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming.frames import RgbImage
from streaming.lite.face_layout import EyeLayout
from streaming.lite.remap import remap

Grid = npt.NDArray[np.floating[Any]]
"""Per-pixel values; float32 wherever they feed `cv2.remap`."""

_BROW = 2.6
"""The stretched lid skin starts this many aperture half-heights above the eye's centre."""
_CLOSED_AT = 0.45
"""A shut lid's edge sits this many aperture half-heights below the eye's centre."""
_SIDE = 1.35
"""The box reaches this many half-widths to each side of the eye's centre."""
_LASH_SHADOW = 0.45
"""Darkening along the lid's edge at full closure."""
_MIN_BLINK = 0.02
"""Lid travel below this is invisible; the eye is left untouched."""


@dataclass(frozen=True, slots=True)
class EyeRig:
    """A blink prepared once per eye; `close` is the per-frame work."""

    top: int
    left: int
    grid_x: Grid
    grid_y: Grid
    across: Grid
    """Position along the eye, -1 and 1 at its corners."""
    down: Grid
    """Output pixel below the eye's centre, in pixels along the face's vertical axis."""
    cos: float
    sin: float
    half_height: float

    @classmethod
    def build(cls, eye: EyeLayout, roll: float, canvas_size: tuple[int, int]) -> EyeRig:
        width, height = canvas_size
        cx, cy = eye.center
        cos, sin = math.cos(roll), math.sin(roll)
        reach_side = _SIDE * eye.half_width
        reach_up = (_BROW + 0.5) * eye.half_height
        reach_down = (_CLOSED_AT + 1.5) * eye.half_height
        corners = [(a, t) for a in (-reach_side, reach_side) for t in (-reach_up, reach_down)]
        xs = [cx + a * cos - t * sin for a, t in corners]
        ys = [cy + a * sin + t * cos for a, t in corners]
        left, right = max(0, math.floor(min(xs))), min(width, math.ceil(max(xs)) + 1)
        top, bottom = max(0, math.floor(min(ys))), min(height, math.ceil(max(ys)) + 1)

        grid_x, grid_y = np.meshgrid(np.arange(left, right, dtype=np.float32), np.arange(top, bottom, dtype=np.float32))
        x, y = grid_x - cx, grid_y - cy
        return cls(
            top=top,
            left=left,
            grid_x=grid_x,
            grid_y=grid_y,
            across=(x * cos + y * sin) / eye.half_width,
            down=-x * sin + y * cos,
            cos=cos,
            sin=sin,
            half_height=eye.half_height,
        )

    @property
    def box(self) -> tuple[slice, slice]:
        rows, cols = self.across.shape
        return slice(self.top, self.top + rows), slice(self.left, self.left + cols)

    def close(self, canvas: RgbImage, closure: float) -> None:
        """Draw the lid `closure` of the way shut (0 open, 1 shut) into `canvas`, in place."""
        if closure < _MIN_BLINK:
            return
        closure = min(float(closure), 1.0)
        h = self.half_height
        # The eye's opening is an ellipse: the lid travels furthest at the centre and not at all at the corners.
        bulge = np.sqrt(np.clip(1 - self.across * self.across, 0, 1))
        brow = -_BROW * h
        open_edge = -h * bulge
        edge = open_edge + closure * (_CLOSED_AT * h * bulge - open_edge)
        t = self.down

        stretch = (open_edge - brow) / np.maximum(edge - brow, 1e-3)
        source_t = np.where((t < edge) & (t > brow), brow + (t - brow) * stretch, t)
        shift = source_t - t
        map_x = self.grid_x - shift * self.sin
        map_y = self.grid_y + shift * self.cos
        rows, cols = self.box
        closed = remap(canvas, map_x, map_y)

        lashes = _LASH_SHADOW * closure * bulge * np.exp(-(((t - edge) / (0.22 * h + 0.6)) ** 2))
        canvas[rows, cols] = np.clip(closed * (1 - lashes[..., None]) + 0.5, 0, 255).astype(np.uint8)
