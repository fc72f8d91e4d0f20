"""A renderer wrapper that reports how long each render call takes, so `/metrics` shows the renderer's budget and
sessions can size their playout delay from the render time actually measured."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from prometheus_client import Histogram

from server.render_times import RenderTimes
from streaming.frames import AudioWindow, IdlePose, RgbImage
from streaming.renderer import Renderer, RenderSession, WindowSpec

AvatarT = TypeVar("AvatarT")


class TimedRenderer(Generic[AvatarT]):
    """Satisfies `Renderer` by delegating every call to `inner`; the sessions it opens time their render calls
    into `histogram` and into `times` (window calls only: idle frames are cheap and never set the budget)."""

    def __init__(self, inner: Renderer[AvatarT], histogram: Histogram, times: RenderTimes) -> None:
        self.inner = inner
        self._histogram = histogram
        self.times = times
        self.name = inner.name
        self.fps = inner.fps
        self.frame_size = inner.frame_size

    @property
    def window(self) -> WindowSpec:
        return self.inner.window

    def prepare_avatar(self, portrait: RgbImage) -> AvatarT:
        return self.inner.prepare_avatar(portrait)

    def open_session(self, avatar: AvatarT) -> RenderSession:
        return _TimedSession(self.inner.open_session(avatar), self._histogram, self.times)


class _TimedSession:
    def __init__(self, inner: RenderSession, histogram: Histogram, times: RenderTimes) -> None:
        self.inner = inner
        self._window_seconds = histogram.labels(kind="window")
        self._idle_seconds = histogram.labels(kind="idle")
        self._times = times

    def render_window(self, window: AudioWindow) -> list[RgbImage]:
        started = time.perf_counter()
        frames = self.inner.render_window(window)
        elapsed = time.perf_counter() - started
        self._window_seconds.observe(elapsed)
        if len(frames) == window.frame_count:  # a render cut short by an interruption says nothing of the budget
            self._times.add(elapsed)
        return frames

    def render_idle(self, first_frame: int, poses: Sequence[IdlePose]) -> list[RgbImage]:
        started = time.perf_counter()
        frames = self.inner.render_idle(first_frame, poses)
        self._idle_seconds.observe(time.perf_counter() - started)
        return frames

    def reset(self, resume_frame: int, last_shown: RgbImage | None) -> None:
        self.inner.reset(resume_frame, last_shown)

    def close(self) -> None:
        self.inner.close()
