"""An `AvatarStream` on a `VirtualClock`, fed audio in step with the clock, its frames collected as they come."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from types import TracebackType

from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import VirtualClock
from streaming.frames import SAMPLE_RATE, AudioChunk, FloatAudio, VideoFrame
from streaming.render_governor import RenderGovernor
from streaming.vad import SpeechClassifier
from tests.streaming.fake_renderer import FakeAvatar, FakeRenderer
from tests.streaming.signals import LoudnessClassifier, chunks

CHUNK = 0.02
"""Audio arrives in 20 ms chunks, as WebRTC delivers it."""


def frames_touching(start: float, end: float, fps: float = 24.0) -> list[int]:
    """Frames whose interval overlaps media time [start, end)."""
    return list(range(math.floor(start * fps + 1e-9), math.ceil(end * fps - 1e-9)))


class StreamHarness:
    def __init__(
        self,
        settings: StreamSettings | None = None,
        renderer: FakeRenderer | None = None,
        classifier: SpeechClassifier | None = None,
        *,
        consume: bool = True,
        governor: Callable[[VirtualClock], RenderGovernor] | None = None,
    ) -> None:
        """`governor`: makes the stream's overload governor on the harness's clock."""
        self.clock = VirtualClock()
        self.governor = governor(self.clock) if governor is not None else None
        self.renderer = renderer if renderer is not None else FakeRenderer()
        self.stream = AvatarStream(
            self.renderer,
            FakeAvatar(),
            settings if settings is not None else StreamSettings(),
            self.clock,
            classifier=classifier if classifier is not None else LoudnessClassifier(),
            governor=self.governor,
        )
        self.frames: list[VideoFrame] = []
        self.arrivals: list[float] = []
        """Clock time at which each frame reached the consumer."""
        self.pushed: list[FloatAudio] = []
        self.pts = 0.0
        self._consume = consume
        self._consumer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamHarness:
        await self.stream.start()
        if self._consume:
            self._consumer = asyncio.create_task(self._collect())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.renderer.gate.set()  # never leave a worker thread blocked behind a test
        await self.stream.aclose()
        if self._consumer is not None:
            await asyncio.wait_for(self._consumer, timeout=10)

    async def _collect(self) -> None:
        async for frame in self.stream:
            self.frames.append(frame)
            self.arrivals.append(self.clock.now())

    async def take(self) -> VideoFrame:
        """The next frame, for a harness made with `consume=False`; fails rather than hangs."""
        return await asyncio.wait_for(anext(self.stream), timeout=5)

    @property
    def indices(self) -> list[int]:
        return [frame.index for frame in self.frames]

    def push(self, samples: FloatAudio) -> None:
        """Push audio now, whatever the clock says (a producer sending faster than real time)."""
        self.stream.push_audio(AudioChunk(samples=samples, pts=self.pts))
        self.pts += len(samples) / SAMPLE_RATE
        self.pushed.append(samples)

    async def play(self, samples: FloatAudio) -> None:
        """Push audio in real time: each 20 ms chunk when the clock reaches its end, then let the stream settle."""
        for chunk in chunks(samples, CHUNK):
            await self.clock.advance(chunk.duration)
            self.push(chunk.samples)
            await self.settle()

    async def wait(self, seconds: float) -> None:
        """Let the clock run with no audio arriving."""
        for _ in range(round(seconds / CHUNK)):
            await self.clock.advance(CHUNK)
            await self.settle()

    async def settle(self, within: float = 5.0) -> None:
        """Wait (in real time) until the stream has nothing to do before the clock moves: its worker is asleep on
        the clock, or finished, and the consumer has taken every frame, twice in a row a millisecond apart (the
        worker may have been woken but not yet have run)."""
        give_up = time.monotonic() + within
        quiet_polls = 0
        while quiet_polls < 2:
            await asyncio.sleep(0.001)
            worker_idle = self.clock.sleepers >= 1 or self.stream_finished
            quiet_polls = quiet_polls + 1 if worker_idle and self.stream.queued_frames == 0 else 0
            if time.monotonic() > give_up:
                raise AssertionError("the stream did not settle")

    async def until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Wait (in real time) for `condition`, e.g. for the consumer to have received some frames."""
        give_up = time.monotonic() + within
        while not condition():
            if time.monotonic() > give_up:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.001)

    @property
    def stream_finished(self) -> bool:
        return self._consumer is not None and self._consumer.done()

    async def finish(self) -> None:
        """End of input: wait for the last frame."""
        await self.stream.flush()
        assert self._consumer is not None
        await asyncio.wait_for(self._consumer, timeout=10)
