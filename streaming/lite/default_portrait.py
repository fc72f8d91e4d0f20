"""The portrait the server animates when the user brings none, and how any portrait file is read."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streaming.frames import RgbImage

_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def default_portrait_path() -> Path:
    """Eileen Collins, NASA (public domain); see `streaming/assets/LICENSE-default-portrait.md`."""
    return _ASSETS / "default_portrait.png"


def load_portrait(path: str | Path) -> RgbImage:
    """Read an image file as H x W x 3 RGB uint8. Raises `ValueError` with a user-facing message when the file
    is missing or is not an image OpenCV can decode."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the portrait {path}: {error.strerror or error}") from error
    return decode_portrait(data, name=str(path))


def decode_portrait(data: bytes, name: str = "the portrait") -> RgbImage:
    """Decode image bytes (PNG, JPEG, WebP, BMP, ...) as H x W x 3 RGB uint8, dropping any alpha channel."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError(f"{name} is not an image that can be read; use a PNG or JPEG photo")
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
