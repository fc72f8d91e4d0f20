"""Paint the inside of an open mouth into the gap between the parted lips.

A dark cavity, darkest in the shadow of the upper lip and lighter toward the corners and the floor, with a band of
upper teeth just under the upper lip (unless the portrait shows its own) and a tongue rising from the bottom once
the mouth is open wide enough to show them. Colours come from the
portrait's own lips and skin so the interior sits in the photo's light. Edges are soft: coverage falls off over a
pixel and every feature fades in with the gap, so nothing pops.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from streaming.frames import RgbImage
from streaming.lite.face_layout import FaceLayout
from streaming.lite.mouth_warp import Cavity
from streaming.lite.smoothstep import smoothstep

Colour = npt.NDArray[np.float32]

_TEETH_WHITE = np.array([242, 234, 216], dtype=np.float32)
_TONGUE_PINK = np.array([176, 84, 88], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class MouthPalette:
    rim: Colour
    """Just inside the lips."""
    deep: Colour
    """The back of the mouth."""
    teeth: Colour
    tongue: Colour
    paint_teeth: bool
    """False where the portrait's own teeth show between its lips."""

    @classmethod
    def from_portrait(cls, canvas: RgbImage, layout: FaceLayout) -> MouthPalette:
        mx, my = layout.mouth_center
        half_width = layout.mouth_width / 2
        mouth = canvas[
            max(0, round(my - 0.6 * half_width)) : round(my + 0.6 * half_width) + 1,
            max(0, round(mx - 0.8 * half_width)) : round(mx + 0.8 * half_width) + 1,
        ].reshape(-1, 3)
        # The reddest pixels around the mouth are lip, whether or not the portrait shows teeth.
        redness = cv2.cvtColor(mouth[None], cv2.COLOR_RGB2LAB)[0, :, 1]
        lip = np.median(mouth[redness >= np.percentile(redness, 85)], axis=0).astype(np.float32)
        fx, fy, fw, fh = layout.face_box
        cheeks = canvas[round(fy + 0.5 * fh) : round(fy + 0.65 * fh), round(fx + 0.25 * fw) : round(fx + 0.75 * fw)]
        skin_lightness, skin_redness = np.median(_lab(cheeks)[:, :2], axis=0)
        lip_line = _lab(
            canvas[
                round(my - 0.1 * half_width) : round(my + 0.1 * half_width) + 1,
                round(mx - 0.4 * half_width) : round(mx + 0.4 * half_width) + 1,
            ]
        )
        # A smiling portrait already shows its teeth at the lip line (lighter than the skin and less red, where
        # lips are darker and redder); they part with the lips, so painting more would double them.
        teeth_like = (lip_line[:, 0] >= skin_lightness) & (lip_line[:, 1] <= skin_redness)
        shows_teeth = float(teeth_like.mean()) > 0.25
        light = float(np.clip(float(np.median(cheeks.reshape(-1, 3).mean(axis=1))) / 190.0, 0.45, 1.1))
        return cls(
            rim=lip * np.array([0.5, 0.34, 0.34], dtype=np.float32),
            deep=np.maximum(lip * np.array([0.13, 0.07, 0.07], dtype=np.float32), 4.0),
            teeth=_TEETH_WHITE * 0.88 * light,
            tongue=(0.5 * lip + 0.5 * _TONGUE_PINK) * 0.8 * light,
            paint_teeth=not shows_teeth,
        )


def paint_interior(box: RgbImage, cavity: Cavity, palette: MouthPalette, mouth_width: float) -> None:
    """Blend the mouth interior into `box` (the warped mouth box) where `cavity` is open."""
    rows, cols = np.nonzero(cavity.inside > 1 / 255)
    if len(rows) == 0:
        return
    region = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    inside = cavity.inside[region][..., None]
    depth = cavity.depth[region][..., None]
    across = np.abs(cavity.across[region])[..., None]
    gap = cavity.gap

    # Darkest in the shadow of the upper lip, lighter toward the sides and the floor of the mouth.
    darkness = np.sqrt(np.clip(1 - across * across, 0, 1)) * (1 - 0.5 * depth * depth)
    colour = palette.rim + (palette.deep - palette.rim) * darkness

    if palette.paint_teeth:
        # Upper teeth hang from the skull: a band of fixed height under the upper lip, in the shade of the lips.
        teeth_height = min(0.3 * gap, 0.08 * mouth_width)
        teeth = (
            np.clip(teeth_height - depth * gap + 0.5, 0, 1)
            * np.clip(1 - (across / 0.7) ** 4, 0, 1)
            * (0.9 * _ramp(gap, 2.0, 6.0))
        )
        colour += (palette.teeth * (1 - 0.4 * across * across) - colour) * teeth

    tongue = smoothstep((depth - 0.55) / 0.35) * np.clip(1 - (across / 0.8) ** 2, 0, 1) * (0.8 * _ramp(gap, 6.0, 14.0))
    colour += (palette.tongue - colour) * tongue

    patch = box[region].astype(np.float32)
    box[region] = np.clip(patch + (colour - patch) * inside + 0.5, 0, 255).astype(np.uint8)


def _lab(pixels: RgbImage) -> npt.NDArray[np.float32]:
    """OpenCV's 8-bit Lab (L, a*, b*, each 0..255) of every pixel, one row per pixel."""
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)


def _ramp(value: float, start: float, end: float) -> float:
    """0 up to `start`, 1 from `end`, linear between."""
    return min(max((value - start) / (end - start), 0.0), 1.0)
