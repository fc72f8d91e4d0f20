"""Frame the face: cut the portrait around it to the output's aspect ratio and scale it to the frame size.

The cut keeps a margin around the frame so that head motion later pulls in real picture instead of a border.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streaming.frames import RgbImage
from streaming.lite.face_layout import Box

FACE_ZOOM = 2.3
"""The frame's shorter side spans this many face widths (room for hair, chin and shoulders)."""
FACE_DROP = 0.12
"""The frame centre sits this many face widths below the face centre, so the chin and neck fit."""
MARGIN = 0.05
"""Extra picture kept on every side, as a fraction of the frame's shorter side."""


@dataclass(frozen=True, slots=True)
class PortraitCrop:
    canvas: RgbImage
    """The frame plus `margin` pixels of picture on every side."""
    margin: int
    face_box: Box
    """The face in canvas pixels."""


def crop_around_face(image: RgbImage, face_box: Box, frame_size: tuple[int, int]) -> PortraitCrop:
    frame_width, frame_height = frame_size
    margin = round(MARGIN * min(frame_size))
    image_height, image_width = image.shape[:2]
    fx, fy, fw, fh = face_box

    # Frame pixels per portrait pixel, raised where the portrait is too small to fill the frame at FACE_ZOOM.
    scale = max(min(frame_size) / (FACE_ZOOM * fw), frame_width / image_width, frame_height / image_height)
    crop_width, crop_height = frame_width / scale, frame_height / scale
    centre_x = min(max(fx + fw / 2, crop_width / 2), image_width - crop_width / 2)
    centre_y = min(max(fy + fh / 2 + FACE_DROP * fw, crop_height / 2), image_height - crop_height / 2)

    pad = margin / scale
    x0, x1 = round(centre_x - crop_width / 2 - pad), round(centre_x + crop_width / 2 + pad)
    y0, y1 = round(centre_y - crop_height / 2 - pad), round(centre_y + crop_height / 2 + pad)
    inside = image[max(0, y0) : min(image_height, y1), max(0, x0) : min(image_width, x1)]
    region = cv2.copyMakeBorder(
        inside,
        max(0, -y0),
        max(0, y1 - image_height),
        max(0, -x0),
        max(0, x1 - image_width),
        cv2.BORDER_REPLICATE,
    )
    canvas_size = (frame_width + 2 * margin, frame_height + 2 * margin)
    shrinking = canvas_size[0] < region.shape[1]
    canvas = np.asarray(
        cv2.resize(region, canvas_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC), dtype=np.uint8
    )

    scale_x, scale_y = canvas_size[0] / (x1 - x0), canvas_size[1] / (y1 - y0)
    canvas_face = ((fx - x0) * scale_x, (fy - y0) * scale_y, fw * scale_x, fh * scale_y)
    return PortraitCrop(canvas=canvas, margin=margin, face_box=canvas_face)
