"""A renderer wrapper that reports how long each render call takes, so `/metrics` shows the renderer's budget."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from prometheus_client import Histogram

from streaming.frames import AudioWindow, IdlePose, RgbImage
from streaming.renderer import Renderer

AvatarT = TypeVar("AvatarT")


class TimedRenderer(Generic[AvatarT]):
    """Satisfies `Renderer` by delegating every call to `inner`; render calls are timed into `histogram`."""

    def __init__(self, inner: Renderer[AvatarT], histogram: Histogram) -> None:
        self._inner = inner
        self._window_seconds = histogram.labels(kind="window")
        self._idle_seconds = histogram.labels(kind="idle")
        self.name = inner.name
        self.fps = inner.fps
        self.frame_size = inner.frame_size
        self.window = inner.window

    def prepare_avatar(self, portrait: RgbImage) -> AvatarT:
        return self._inner.prepare_avatar(portrait)

    def render_window(self, avatar: AvatarT, window: AudioWindow) -> list[RgbImage]:
        started = time.perf_counter()
        frames = self._inner.render_window(avatar, window)
        self._window_seconds.observe(time.perf_counter() - started)
        return frames

    def render_idle(self, avatar: AvatarT, poses: Sequence[IdlePose]) -> list[RgbImage]:
        started = time.perf_counter()
        frames = self._inner.render_idle(avatar, poses)
        self._idle_seconds.observe(time.perf_counter() - started)
        return frames
