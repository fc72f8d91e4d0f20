"""Open the mouth by warping the lower face: the lower lip and chin drop, the upper lip lifts a little, the
corners spread or round.

The warp is a backward map over a small box around the mouth and jaw: for each output pixel, where in the
portrait to sample. Geometry lives in mouth-local coordinates (`a` along the lip line from the mouth centre,
`t` down from it, both in pixels) so a tilted face opens along its own axis. Above the lip line the skin is lifted
by `raise_ * V`, below it lowered by `drop * W`; between the two, the lips part and the output is a cavity that
`mouth_interior` paints. Every displacement fades to zero before the box edge, so no seam can show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming.frames import RgbImage
from streaming.lite.face_layout import FaceLayout
from streaming.lite.mouth_driver import MouthShape
from streaming.lite.remap import remap
from streaming.lite.smoothstep import smoothstep

Grid = npt.NDArray[np.floating[Any]]
"""Per-pixel values; float32 wherever they feed `cv2.remap`."""

MAX_DROP = 0.34
"""Lower-lip drop at full opening, in mouth widths."""
MAX_RAISE = 0.07
"""Upper-lip lift at full opening, in mouth widths."""
MAX_SPREAD = 0.10
"""Corner movement at full spread, as a fraction of the half-width."""
OPENING_PINCH = 0.05
"""A dropping jaw pulls the corners in slightly, as a fraction of the half-width."""

_OPENING = 0.95
"""The lips part over this fraction of the mouth's width; the corners stay closed."""
_LOWER_LIP = 0.9
"""Depth (in half-widths) over which the lower lip's curved edge gives way to the jaw's broad profile."""
_UPPER_LIP = 0.65
"""Height (in half-widths) over which the lift dies out toward the nose."""
_JAW_SPREAD = 0.75
"""Width of the jaw's lateral profile (how far to the side a dropping jaw still pulls the skin down), as a
fraction of the jaw's half-width."""
_NECK = 0.7
"""Below the chin the drop fades out over this many mouth widths of neck."""
_SIDE = 1.6
"""The warped box reaches this many jaw profile widths to each side of the mouth centre."""
_FEATHER = 0.3
"""Displacements fade to zero over this many half-widths at the box edge."""
_SOLVER_STEPS = 3


@dataclass(frozen=True, slots=True)
class Cavity:
    """The parted lips in the warped box: where the mouth interior shows and where within it each pixel is."""

    inside: Grid
    """Soft coverage of the opening, 0..1."""
    depth: Grid
    """0 at the upper lip's edge, 1 at the lower lip's edge."""
    across: Grid
    """-1 at one end of the opening, 0 at the centre, 1 at the other."""
    gap: float
    """Distance between the lips at the centre, in pixels."""


@dataclass(frozen=True, slots=True)
class MouthRig:
    """A warp prepared once per avatar; `warp` is the per-frame work."""

    top: int
    left: int
    along: Grid
    """`a` of every output pixel in the box."""
    down: Grid
    """`t` of every output pixel in the box, measured from the (possibly curved) lip line."""
    bend: Grid
    """How far the lip line sits below the straight axis through the mouth centre, per output pixel."""
    taper: Grid
    centre: tuple[float, float]
    cos: float
    sin: float
    half_width: float
    jaw_width: float
    chin_depth: float

    @classmethod
    def build(cls, layout: FaceLayout, canvas_size: tuple[int, int]) -> MouthRig:
        width, height = canvas_size
        half_width = layout.mouth_width / 2
        mx, my = layout.mouth_center
        cos, sin = math.cos(layout.mouth_tilt), math.sin(layout.mouth_tilt)
        chin_depth = (layout.chin[0] - mx) * -sin + (layout.chin[1] - my) * cos
        reach_up = (_UPPER_LIP + 2 * _FEATHER) * half_width + max(0.0, -layout.mouth_curve)
        reach_down = chin_depth + _NECK * layout.mouth_width + 2 * _FEATHER * half_width + max(0.0, layout.mouth_curve)
        jaw_width = _JAW_SPREAD * layout.jaw_half_width
        reach_side = _SIDE * jaw_width

        corners = [(a, t) for a in (-reach_side, reach_side) for t in (-reach_up, reach_down)]
        xs = [mx + a * cos - t * sin for a, t in corners]
        ys = [my + a * sin + t * cos for a, t in corners]
        left, right = max(0, math.floor(min(xs))), min(width, math.ceil(max(xs)) + 1)
        top, bottom = max(0, math.floor(min(ys))), min(height, math.ceil(max(ys)) + 1)

        x, y = np.meshgrid(np.arange(left, right, dtype=np.float32) - mx, np.arange(top, bottom, dtype=np.float32) - my)
        along = x * cos + y * sin
        # Depth is measured from the lip line itself, which a smile bends up toward the corners.
        straight_down = -x * sin + y * cos
        bend = layout.mouth_curve * np.minimum((along / half_width) ** 2, 1.0)
        feather = _FEATHER * half_width
        taper = (
            smoothstep((along + reach_side) / feather)
            * smoothstep((reach_side - along) / feather)
            * smoothstep((straight_down + reach_up) / feather)
            * smoothstep((reach_down - straight_down) / feather)
        )
        return cls(
            top=top,
            left=left,
            along=along,
            down=straight_down - bend,
            bend=bend,
            taper=taper,
            centre=(mx, my),
            cos=cos,
            sin=sin,
            half_width=half_width,
            jaw_width=jaw_width,
            chin_depth=chin_depth,
        )

    @property
    def box(self) -> tuple[slice, slice]:
        """The warped box as (rows, columns) of the canvas."""
        rows, cols = self.along.shape
        return slice(self.top, self.top + rows), slice(self.left, self.left + cols)

    def warp(self, canvas: RgbImage, shape: MouthShape) -> tuple[RgbImage, Cavity]:
        """The box of `canvas` with the mouth in `shape`, and where its lips part."""
        hw = self.half_width
        drop = shape.opening * MAX_DROP * 2 * hw
        raise_ = shape.opening * MAX_RAISE * 2 * hw
        corner_shift = MAX_SPREAD * shape.spread - OPENING_PINCH * shape.opening
        a, t = self.along, self.down

        # Spreading or rounding moves the corners and the skin right around them, not the cheeks.
        bump = np.exp(-((a / (1.5 * hw)) ** 2) - (t / hw) ** 2)
        source_a = a / (1 + corner_shift * bump)
        across = source_a / (_OPENING * hw)
        lips = np.clip(1 - np.abs(across) ** 2.2, 0, 1) ** 0.75
        jaw = np.exp(-((source_a / self.jaw_width) ** 2))

        upper_edge, lower_edge = -raise_ * lips, drop * lips
        below = self._solve_below(t, lips, jaw, drop)
        above = self._solve_above(t, lips, raise_)
        source_t = np.where(t >= lower_edge, below, np.where(t <= upper_edge, above, 0)) + self.bend

        dx = source_a * self.cos - source_t * self.sin + self.centre[0] - self.left
        dy = source_a * self.sin + source_t * self.cos + self.centre[1] - self.top
        rows, cols = a.shape
        grid_x = np.arange(cols, dtype=np.float32)[None, :]
        grid_y = np.arange(rows, dtype=np.float32)[:, None]
        map_x = grid_x + (dx - grid_x) * self.taper + self.left
        map_y = grid_y + (dy - grid_y) * self.taper + self.top
        warped = remap(canvas, map_x, map_y)

        # Coverage ramps over 0.75 px across each lip edge (anti-aliasing) and fades where the lips are less than a
        # pixel apart.
        soft = 0.75
        opening = np.maximum(lower_edge - upper_edge, 1e-3)
        inside = (
            np.clip((lower_edge - t) / soft + 0.5, 0, 1)
            * np.clip((t - upper_edge) / soft + 0.5, 0, 1)
            * np.clip(lower_edge - upper_edge, 0, 1)
        )
        cavity = Cavity(
            inside=inside,
            depth=np.clip((t - upper_edge) / opening, 0, 1),
            across=across,
            gap=drop + raise_,
        )
        return warped, cavity

    def _solve_below(self, t: Grid, lips: Grid, jaw: Grid, drop: float) -> Grid:
        """Source depth of skin below the lips: solves t = s + drop * W(s) for s >= 0 by fixed-point steps."""
        hw = self.half_width
        neck = _NECK * 2 * hw
        source = np.maximum(t - drop * lips, 0)
        for _ in range(_SOLVER_STEPS):
            profile = lips + (jaw - lips) * smoothstep(source / (_LOWER_LIP * hw))
            holds = 1 - smoothstep((source - self.chin_depth) / neck)
            source = np.maximum(t - drop * profile * holds, 0)
        return source

    def _solve_above(self, t: Grid, lips: Grid, raise_: float) -> Grid:
        """Source height of skin above the lips: solves t = s - raise * V(s) for s <= 0."""
        reach = _UPPER_LIP * self.half_width
        source = np.minimum(t + raise_ * lips, 0)
        for _ in range(_SOLVER_STEPS):
            source = np.minimum(t + raise_ * lips * (1 - smoothstep(-source / reach)), 0)
        return source
