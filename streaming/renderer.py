"""The `Renderer` interface every talking-head back end satisfies, structurally, and the per-session state it opens.

A renderer turns a portrait into an avatar once (`prepare_avatar`; avatars are immutable and shared by every
session that shows the same portrait), then opens one `RenderSession` per live session (`open_session`). The
session is where a renderer keeps what it has already drawn, so the next window can continue it: EchoMimic keeps
the latents of the frames on screen and a rolling audio history; `lite` keeps nothing.

The stream owns the clock and the frame indices and calls a session from one worker thread at a time, never on
the event loop, with one exception: on an interruption it calls `cancel` from the event loop at once, possibly
while a render runs in the worker, so `cancel` must be thread-safe; the render it overtakes (or one that starts
before the next `reset`) may stop early and return fewer frames, which the stream throws away. Then, once no
render is in flight, the stream calls `reset` with where drawing resumes.

A renderer may also say how much memory a prepared avatar holds (`MeasuresAvatars`), so a server can bound the
avatars it keeps; EchoMimic's avatars hold GPU tensors, `lite`'s a few image-sized arrays.

`echomimic/` implements this protocol and imports it (and `streaming.frames`) but nothing else of `streaming`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from streaming.frames import AudioWindow, IdlePose, RgbImage

AvatarT = TypeVar("AvatarT")
AvatarT_contra = TypeVar("AvatarT_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How a renderer wants its audio cut: `frames` new frames per window, `context` frames of overlap before them,
    and `lookahead` seconds of audio after them. `onset_frames` (default `frames`) is the size of the first window
    after a speech onset: short, so the face starts moving before a whole window of voice has arrived.

    `max_frame_stride` (default 1: never) is the largest `AudioWindow.frame_stride` the renderer draws honestly:
    under overload the stream then asks for every second frame of a window, and for idle frames of every second
    pose, and shows each frame twice (see `streaming.render_governor`). Only a renderer whose frames do not depend
    on drawing their neighbours at the full rate can offer it."""

    frames: int
    context: int
    lookahead: float
    onset_frames: int | None = None
    max_frame_stride: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.context < 0 or self.lookahead < 0:
            raise ValueError(f"a window needs frames >= 1, context >= 0 and lookahead >= 0, got {self}")
        if self.onset_frames is not None and not 1 <= self.onset_frames <= self.frames:
            raise ValueError(f"onset_frames must be between 1 and frames ({self.frames}), got {self.onset_frames}")
        if self.max_frame_stride < 1:
            raise ValueError(f"max_frame_stride must be at least 1, got {self.max_frame_stride}")

    @property
    def first_window_frames(self) -> int:
        """Frames in the first window of an utterance."""
        return self.onset_frames if self.onset_frames is not None else self.frames


class RenderSession(Protocol):
    """One live session's drawing state. Frames are asked for in index order, each exactly once, except after
    `reset`, which rewinds to the frame the viewer is due next."""

    def render_window(self, window: AudioWindow) -> list[RgbImage]:
        """Return exactly one frame per index in `window.drawn_frames` (every frame, one per pose in
        `window.poses`, unless the window has a stride; fewer only when a `reset` overtook the call)."""
        ...

    def render_idle(self, first_frame: int, poses: Sequence[IdlePose]) -> list[RgbImage]:
        """Return one closed-mouth frame per pose, for frames `first_frame`, `first_frame + 1`, ... (under a
        frame stride, the stream passes every stride-th pose only)."""
        ...

    def cancel(self) -> None:
        """Stop the render running now, and any that starts before the next `reset`, as soon as possible.
        Thread-safe; returns at once."""
        ...

    def reset(self, resume_frame: int, last_shown: RgbImage | None) -> None:
        """After a `cancel`: everything drawn from `resume_frame` on is void, and `last_shown` (frame
        `resume_frame - 1`, if any was shown) is what the viewer sees now."""
        ...

    def close(self) -> None:
        """Release what the session holds. It is not used again."""
        ...


class AvatarDrawer(Protocol[AvatarT_contra]):
    """A renderer whose frames depend on nothing but the avatar and the request, so it needs no session state."""

    def render_window(self, avatar: AvatarT_contra, window: AudioWindow) -> list[RgbImage]: ...

    def render_idle(self, avatar: AvatarT_contra, poses: Sequence[IdlePose]) -> list[RgbImage]: ...


class StatelessSession(Generic[AvatarT]):
    """The `RenderSession` of an `AvatarDrawer`: every call goes straight to the drawer with the avatar."""

    def __init__(self, drawer: AvatarDrawer[AvatarT], avatar: AvatarT) -> None:
        self._drawer = drawer
        self._avatar = avatar

    def render_window(self, window: AudioWindow) -> list[RgbImage]:
        return self._drawer.render_window(self._avatar, window)

    def render_idle(self, first_frame: int, poses: Sequence[IdlePose]) -> list[RgbImage]:
        return self._drawer.render_idle(self._avatar, poses)

    def cancel(self) -> None:
        """Frames take no time to stop."""

    def reset(self, resume_frame: int, last_shown: RgbImage | None) -> None:
        """Nothing to forget."""

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    """A renderer on an accelerator reports this for admission: bytes free on the device now, and the bytes one more
    session would take there."""

    free_bytes: int
    session_bytes: int


class Renderer(Protocol[AvatarT]):
    """Prepares portraits and opens drawing sessions on them.

    Two optional members tell admission (`server.admission`) what the renderer can carry: `parallel_renders`, how
    many render calls run at once without slowing each other (absent: 1), and `device_memory()`, a `DeviceMemory`
    (None when there is no device to count)."""

    name: str
    fps: float
    frame_size: tuple[int, int]
    """(width, height) of every frame it returns."""

    @property
    def window(self) -> WindowSpec: ...

    def prepare_avatar(self, portrait: RgbImage) -> AvatarT:
        """Analyse a portrait (H x W x 3 RGB) once. Raises `ValueError` with a user-facing message when the
        portrait has no usable face."""
        ...

    def open_session(self, avatar: AvatarT) -> RenderSession:
        """Start drawing one live session of `avatar`."""
        ...


@dataclass(frozen=True, slots=True)
class AvatarMemory:
    """What one prepared avatar holds, in bytes: in the process's memory, and on an accelerator (a GPU)."""

    host_bytes: int
    device_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.host_bytes + self.device_bytes


@runtime_checkable
class MeasuresAvatars(Protocol[AvatarT_contra]):
    """Optional for a `Renderer`: the memory a prepared avatar holds."""

    def avatar_memory(self, avatar: AvatarT_contra) -> AvatarMemory: ...
