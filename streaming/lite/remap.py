"""The one resampling step every warp ends in: sample an image at given positions."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streaming.frames import RgbImage


def remap(image: RgbImage, map_x: npt.NDArray[np.floating[Any]], map_y: npt.NDArray[np.floating[Any]]) -> RgbImage:
    """Output pixel (row, col) takes `image` at (`map_x[row, col]`, `map_y[row, col]`), bilinearly; positions off
    the image take the nearest edge pixel."""
    sampled = cv2.remap(
        image,
        map_x.astype(np.float32, copy=False),
        map_y.astype(np.float32, copy=False),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.asarray(sampled, dtype=np.uint8)
