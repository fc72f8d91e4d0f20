"""A renderer for tests: records every call and draws solid frames that say which frame they are.

Each frame is filled with one colour: red and green hold the frame index (`index = 256 * red + green`), blue
says whether the mouth is open (255) or closed (0). `decode(image)` reads them back, so a test can check what
came out of a stream without trusting the stream's own bookkeeping. An idle call is not told its frame indices,
so the fake recovers them from the poses, which `IdleMotion` makes unique to each frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streaming.frames import AudioWindow, IdlePose, RgbImage
from streaming.idle import IdleMotion
from streaming.renderer import RenderSession, StatelessSession, WindowSpec

MOUTH_OPEN = 255


@dataclass(frozen=True)
class FakeAvatar:
    name: str = "fake"


@dataclass(frozen=True)
class RenderCall:
    kind: str  # "window" or "idle"
    first_frame: int
    frame_count: int
    poses: tuple[IdlePose, ...]
    window: AudioWindow | None


def encode(index: int, mouth_open: bool, size: tuple[int, int]) -> RgbImage:
    width, height = size
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = index // 256 % 256
    image[..., 1] = index % 256
    image[..., 2] = MOUTH_OPEN if mouth_open else 0
    return image


def decode(image: RgbImage) -> tuple[int, bool]:
    """(frame index modulo 65536, mouth open) of an image drawn by `FakeRenderer`."""
    red, green, blue = (int(channel) for channel in image[0, 0])
    return red * 256 + green, blue == MOUTH_OPEN


class FakeSession(StatelessSession[FakeAvatar]):
    """Draws through the renderer and records how the stream drives it."""

    def __init__(self, renderer: FakeRenderer, avatar: FakeAvatar) -> None:
        super().__init__(renderer, avatar)
        self.resets: list[tuple[int, RgbImage | None]] = []
        self.cancels = 0
        self.closed = False

    def cancel(self) -> None:
        self.cancels += 1

    def reset(self, resume_frame: int, last_shown: RgbImage | None) -> None:
        self.resets.append((resume_frame, last_shown))

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeRenderer:
    """Satisfies `streaming.renderer.Renderer`. `render_delay` slows every call; clearing `gate` blocks calls
    until it is set again (a renderer that has fallen behind). A call is recorded as soon as it begins."""

    fps: float = 24.0
    window: WindowSpec = field(default_factory=lambda: WindowSpec(frames=4, context=2, lookahead=0.04))
    frame_size: tuple[int, int] = (8, 8)
    name: str = "fake"
    render_delay: float = 0.0
    idle_seed: int = 0
    calls: list[RenderCall] = field(default_factory=list)
    sessions: list[FakeSession] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()
        self._lock = threading.Lock()
        self._motion = IdleMotion(self.idle_seed)
        self._pose_indices: dict[IdlePose, int] = {}
        self._poses_known = 0

    def prepare_avatar(self, portrait: RgbImage) -> FakeAvatar:
        if portrait.ndim != 3 or portrait.shape[2] != 3:
            raise ValueError("portrait must be an H x W x 3 RGB image")
        return FakeAvatar()

    def open_session(self, avatar: FakeAvatar) -> RenderSession:
        session = FakeSession(self, avatar)
        self.sessions.append(session)
        return session

    def render_window(self, avatar: FakeAvatar, window: AudioWindow) -> list[RgbImage]:
        self._record(RenderCall("window", window.first_frame, window.frame_count, window.poses, window))
        return [encode(index, True, self.frame_size) for index in window.drawn_frames]

    def render_idle(self, avatar: FakeAvatar, poses: Sequence[IdlePose]) -> list[RgbImage]:
        indices = [self._index_of(pose) for pose in poses]
        self._record(RenderCall("idle", indices[0] if indices else -1, len(poses), tuple(poses), None))
        return [encode(index, False, self.frame_size) for index in indices]

    def _index_of(self, pose: IdlePose) -> int:
        with self._lock:
            while pose not in self._pose_indices:
                if self._poses_known > 1_000_000:
                    raise AssertionError(f"{pose} is not a pose IdleMotion(seed={self.idle_seed}) gives any frame")
                self._pose_indices[self._motion.pose(self._poses_known, self.fps)] = self._poses_known
                self._poses_known += 1
            return self._pose_indices[pose]

    def _record(self, call: RenderCall) -> None:
        with self._lock:
            self.calls.append(call)
        self.gate.wait()
        if self.render_delay:
            time.sleep(self.render_delay)
