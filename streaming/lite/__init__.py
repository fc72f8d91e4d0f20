"""The built-in CPU renderer: a portrait's mouth, eyes and head warped in real time from the voice. No model."""

from streaming.lite.default_portrait import decode_portrait, default_portrait_path, load_portrait
from streaming.lite.mouth_driver import MouthDriver, MouthShape
from streaming.lite.renderer import LiteAvatar, LiteRenderer

__all__ = [
    "LiteAvatar",
    "LiteRenderer",
    "MouthDriver",
    "MouthShape",
    "decode_portrait",
    "default_portrait_path",
    "load_portrait",
]
