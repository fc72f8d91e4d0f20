"""Reference preparation: find the face in a portrait, crop a square around it and mark the face region.

This follows the official EchoMimic inference preprocessing, with OpenCV's Haar cascade in place of MTCNN:
the largest detected face box, grown by 10% of its size on every side, is the face mask; the box grown by 50%
on every side and clamped to the image, then shrunk to a centred square, is the crop. Image and mask are
cropped alike and resized to size×size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from cv2.data import haarcascades

MASK_GROWTH = 0.1
CROP_GROWTH = 0.5
# Haar detection cost grows with pixel count; faces in portraits stay far above the cascade's 24 px window at this size.
DETECTION_MAX_SIDE = 1024
FACE_CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A face rectangle in pixels; `right` and `bottom` are exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True, slots=True)
class PreparedReference:
    """The portrait as EchoMimic consumes it.

    `image` is uint8 RGB [size, size, 3]; `face_mask` is float32 [size, size], 1 on the face region and 0 elsewhere.
    """

    image: npt.NDArray[np.uint8]
    face_mask: npt.NDArray[np.float32]


def prepare_reference(image_rgb: npt.NDArray[np.uint8], size: int = 512) -> PreparedReference:
    """Crop `image_rgb` (uint8 [H, W, 3]) around its largest face; ValueError if there is no face."""
    return crop_around_face(image_rgb, detect_largest_face(image_rgb), size)


def detect_largest_face(image_rgb: npt.NDArray[np.uint8]) -> FaceBox:
    """The largest frontal face OpenCV's Haar cascade finds; ValueError if it finds none."""
    _check_image(image_rgb)
    height, width = image_rgb.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    cascade = cv2.CascadeClassifier(haarcascades + FACE_CASCADE_FILE)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {FACE_CASCADE_FILE} is missing from {haarcascades}")
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
    if len(faces) == 0:
        raise ValueError("no face found in the reference image; use a portrait with a clearly visible frontal face")
    x, y, w, h = max(faces, key=lambda face: int(face[2]) * int(face[3]))
    return FaceBox(
        left=round(x / scale),
        top=round(y / scale),
        right=min(width, round((x + w) / scale)),
        bottom=min(height, round((y + h) / scale)),
    )


def crop_around_face(image_rgb: npt.NDArray[np.uint8], face: FaceBox, size: int = 512) -> PreparedReference:
    """Square crop around `face` resized to size×size, with the grown face box as a {0, 1} mask."""
    _check_image(image_rgb)
    if size <= 0:
        raise ValueError(f"size must be positive; got {size}")
    height, width = image_rgb.shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    mask_rect = _grown(face, MASK_GROWTH, width, height)
    mask[mask_rect.top : mask_rect.bottom, mask_rect.left : mask_rect.right] = 1
    crop = _centred_square(_grown(face, CROP_GROWTH, width, height), width, height)
    image_crop = image_rgb[crop.top : crop.bottom, crop.left : crop.right]
    mask_crop = mask[crop.top : crop.bottom, crop.left : crop.right]
    return PreparedReference(
        image=np.asarray(cv2.resize(image_crop, (size, size), interpolation=cv2.INTER_LINEAR), dtype=np.uint8),
        # Nearest keeps the mask binary; the official bilinear resize only softens its one-pixel edge.
        face_mask=cv2.resize(mask_crop, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32),
    )


def _grown(face: FaceBox, ratio: float, width: int, height: int) -> FaceBox:
    """`face` grown by int(ratio·height) rows and int(ratio·width) columns on each side, clamped to the image."""
    rows, columns = int(face.height * ratio), int(face.width * ratio)
    return FaceBox(
        left=max(0, face.left - columns),
        top=max(0, face.top - rows),
        right=min(width, face.right + columns),
        bottom=min(height, face.bottom + rows),
    )


def _centred_square(rect: FaceBox, width: int, height: int) -> FaceBox:
    """The largest square of side min(rect's sides) centred on `rect`, shifted or cut to stay inside the image."""
    side = min(rect.width, rect.height)
    left = max(0, (rect.left + rect.right) // 2 - side // 2)
    top = max(0, (rect.top + rect.bottom) // 2 - side // 2)
    side = min(side, width - left, height - top)
    return FaceBox(left=left, top=top, right=left + side, bottom=top + side)


def _check_image(image_rgb: npt.NDArray[np.uint8]) -> None:
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"reference image must be uint8 RGB [height, width, 3]; got {image_rgb.dtype} {image_rgb.shape}"
        )
    if min(image_rgb.shape[:2]) < 2:
        raise ValueError(f"reference image is too small: {image_rgb.shape[1]}x{image_rgb.shape[0]}")
