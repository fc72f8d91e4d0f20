"""A renderer that fails on demand, for the fault tests: `LoudnessRenderer`, except that the session opened after
`fail_next_session()` raises once it has drawn a few frames, while every other session keeps drawing."""

from __future__ import annotations

from collections.abc import Sequence

from streaming.frames import AudioWindow, IdlePose, RgbImage
from streaming.renderer import RenderSession, StatelessSession
from tests.server.fake_renderer import FakeAvatar, LoudnessRenderer

FRAMES_BEFORE_FAILURE = 10


class InjectedRenderFault(RuntimeError):
    """What the doomed session raises: a renderer bug, a CUDA error, anything a renderer can throw."""


class FaultyRenderer(LoudnessRenderer):
    def __init__(self, fps: float = 25.0) -> None:
        super().__init__(fps)
        self._doom_next = False

    def fail_next_session(self) -> None:
        self._doom_next = True

    def open_session(self, avatar: FakeAvatar) -> RenderSession:
        if not self._doom_next:
            return super().open_session(avatar)
        self._doom_next = False
        return _DoomedSession(self, avatar)


class _DoomedSession(StatelessSession[FakeAvatar]):
    def __init__(self, renderer: LoudnessRenderer, avatar: FakeAvatar) -> None:
        super().__init__(renderer, avatar)
        self._frames_drawn = 0

    def render_window(self, window: AudioWindow) -> list[RgbImage]:
        return self._count(super().render_window(window))

    def render_idle(self, first_frame: int, poses: Sequence[IdlePose]) -> list[RgbImage]:
        return self._count(super().render_idle(first_frame, poses))

    def _count(self, frames: list[RgbImage]) -> list[RgbImage]:
        if self._frames_drawn >= FRAMES_BEFORE_FAILURE:
            raise InjectedRenderFault("the renderer failed mid-session (injected by the test)")
        self._frames_drawn += len(frames)
        return frames
