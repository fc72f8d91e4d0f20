"""A renderer wrapper that reports how long each render call takes, so `/metrics` shows the renderer's budget and
sessions can size their playout delay from the render time actually measured."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Histogram

from server.render_times import RenderTimes
from streaming.frames import AudioWindow, IdlePose, RgbImage
from streaming.renderer import Renderer, RenderSession, WindowSpec

AvatarT = TypeVar("AvatarT")


@dataclass(frozen=True, slots=True)
class RenderCall:
    kind: str
    """"window" or "idle"."""
    first_frame: int
    frame_count: int
    """Frames returned."""
    seconds: float
    cpu_seconds: float
    """CPU time of the rendering thread: the work itself, without waiting for a core."""


class TimedRenderer(Generic[AvatarT]):
    """Satisfies `Renderer` by delegating every call to `inner`; the sessions it opens time their render calls
    into `histogram` and into `times` (window calls only: idle frames are cheap and never set the budget), and tell
    `on_render` about each call. Every call's time per frame goes into `times` too, by kind, for admission."""

    def __init__(
        self,
        inner: Renderer[AvatarT],
        histogram: Histogram,
        times: RenderTimes,
        on_render: Callable[[RenderCall], None] | None = None,
    ) -> None:
        self.inner = inner
        self.times = times
        self.on_render = on_render
        self.name = inner.name
        self.fps = inner.fps
        self.frame_size = inner.frame_size
        self._seconds = {kind: histogram.labels(kind=kind) for kind in ("window", "idle")}

    @property
    def window(self) -> WindowSpec:
        return self.inner.window

    def prepare_avatar(self, portrait: RgbImage) -> AvatarT:
        return self.inner.prepare_avatar(portrait)

    def open_session(self, avatar: AvatarT) -> RenderSession:
        return _TimedSession(self.inner.open_session(avatar), self)

    def record(self, call: RenderCall, complete: bool) -> None:
        """Count one render call; an incomplete one (cut short by an interruption) says nothing of the budget."""
        self._seconds[call.kind].observe(call.seconds)
        self.times.add_call(call.kind, call.seconds, call.frame_count, call.cpu_seconds)
        if call.kind == "window" and complete:
            self.times.add(call.seconds)
        if self.on_render is not None:
            self.on_render(call)


class _TimedSession:
    def __init__(self, inner: RenderSession, renderer: TimedRenderer[AvatarT]) -> None:
        self.inner = inner
        self._renderer = renderer

    def render_window(self, window: AudioWindow) -> list[RgbImage]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        frames = self.inner.render_window(window)
        seconds, cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu_started
        call = RenderCall("window", window.first_frame, len(frames), seconds, cpu_seconds)
        self._renderer.record(call, complete=len(frames) == len(window.drawn_frames))
        return frames

    def render_idle(self, first_frame: int, poses: Sequence[IdlePose]) -> list[RgbImage]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        frames = self.inner.render_idle(first_frame, poses)
        seconds, cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu_started
        self._renderer.record(RenderCall("idle", first_frame, len(frames), seconds, cpu_seconds), True)
        return frames

    def cancel(self) -> None:
        self.inner.cancel()

    def reset(self, resume_frame: int, last_shown: RgbImage | None) -> None:
        self.inner.reset(resume_frame, last_shown)

    def close(self) -> None:
        self.inner.close()
