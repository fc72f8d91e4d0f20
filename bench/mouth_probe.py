"""How open the lite avatar's mouth is in a received video frame: the share of dark pixels around the mouth.

An open mouth shows a dark cavity; lips, teeth and skin are light. Counting dark pixels in a box around the mouth
(placed from the renderer's own face layout) ignores the idle head drift and blinks that a plain difference
from the rest frame would pick up. The latency benchmark and the browser test read the mouth this way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streaming.frames import RgbImage
from streaming.lite.renderer import LiteAvatar

DARK = 60
"""Grey level below which a pixel counts as mouth cavity."""


@dataclass(frozen=True)
class MouthProbe:
    x: int
    y: int
    width: int
    height: int

    @classmethod
    def around(cls, avatar: LiteAvatar) -> MouthProbe:
        """A box around the mouth in frame pixels: lips at rest plus room for the jaw to drop."""
        cx, cy = avatar.layout.mouth_center
        width = avatar.layout.mouth_width
        x, y = cx - avatar.margin - 0.6 * width, cy - avatar.margin - 0.3 * width
        return cls(round(x), round(y), round(1.2 * width), round(1.1 * width))

    def crop(self, frame: RgbImage) -> RgbImage:
        return frame[self.y : self.y + self.height, self.x : self.x + self.width]

    def openness(self, mouth_box: RgbImage) -> float:
        """Share of dark pixels in a crop of the probe's box: about 0.01 closed, 0.05 to 0.15 open."""
        grey = mouth_box.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return float(np.mean(grey < DARK))
