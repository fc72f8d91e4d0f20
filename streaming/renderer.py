"""The `Renderer` interface every talking-head back end satisfies, structurally.

A renderer turns a portrait into an avatar state once, then draws frames for windows of audio (while someone
speaks) and for idle poses (while nobody does). It is called from a worker thread, never on the event loop, and
holds no per-session timing state: the stream owns the clock and the frame indices.

The EchoMimic renderer lives in `echomimic/`, which never imports this package; it matches this protocol by shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from streaming.frames import AudioWindow, IdlePose, RgbImage

AvatarT = TypeVar("AvatarT")


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How a renderer wants its audio cut: `frames` new frames per window, `context` frames of overlap before them,
    and `lookahead` seconds of audio after them."""

    frames: int
    context: int
    lookahead: float


class WindowShape(Protocol):
    """What the stream reads of a renderer's window; `WindowSpec` is one, and other packages may bring their own."""

    @property
    def frames(self) -> int: ...

    @property
    def context(self) -> int: ...

    @property
    def lookahead(self) -> float: ...


class Renderer(Protocol[AvatarT]):
    """Draws an avatar's frames from audio windows and idle poses."""

    name: str
    fps: float
    frame_size: tuple[int, int]
    """(width, height) of every frame it returns."""

    @property
    def window(self) -> WindowShape: ...

    def prepare_avatar(self, portrait: RgbImage) -> AvatarT:
        """Analyse a portrait (H x W x 3 RGB) once. Raises `ValueError` with a user-facing message when the
        portrait has no usable face."""
        ...

    def render_window(self, avatar: AvatarT, window: AudioWindow) -> list[RgbImage]:
        """Return exactly `window.frame_count` frames, one per pose in `window.poses`."""
        ...

    def render_idle(self, avatar: AvatarT, poses: Sequence[IdlePose]) -> list[RgbImage]:
        """Return one closed-mouth frame per pose."""
        ...
