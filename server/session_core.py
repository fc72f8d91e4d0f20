"""What every session is, whatever carries its media: a stream, its pacer, one clock for its outputs, an
admission slot and metrics. Transports subclass it and add only their I/O (`server/session.py` for WebRTC,
`server/bot_session.py` for the bot WebSocket); viewers (`server/viewers.py`) attach to any session as outputs.

Media path: `push_audio()` (16 kHz mono) → `AvatarStream` (VAD, windows, renderer) → `FramePacer` → one tick per
frame slot (`Playout`) → every `MediaOutput`. Audio goes to the outputs too, with the media time it landed at,
so each output can send the voice on the same schedule as the frames. The stream's timeline starts at
`start()`; the pacer is anchored there.

Frames are taken from the stream only shortly before they are due, so that on `interrupt()` the frames not yet
due are still in the stream, which discards them and draws idle frames from the next slot on.

A session ends when a transport worker returns (its reason), when the stream stops, or on `end()`/`close()`.
Ending releases everything it started: its tasks, the stream's worker, the outputs and the transport.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from server.metrics import ServerMetrics
from server.playout import Playout, Tick
from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import Clock
from streaming.frames import AudioChunk
from streaming.latency_budget import LatencyBudget
from streaming.pacer import FramePacer
from streaming.render_governor import RenderGovernor
from streaming.renderer import Renderer

logger = logging.getLogger(__name__)

FPS_WINDOW = 1.0
"""Seconds over which a session's sent frame rate is measured."""
ENCODE_ALLOWANCE = 0.02
"""Seconds allowed for handing a frame to the video encoder, beyond its render time."""
MAX_PLAYOUT_DELAY = 2.0
"""A renderer slower than this cannot hold a conversation; frames later than this are dropped rather than the
whole session lagging further (the warm-up logs that the renderer cannot keep up)."""
ARRIVALS_KEPT = 1000
"""Audio chunks remembered for the latency metric: 20 s of 20 ms packets, far more than the playout delay."""
FORWARD_LEAD_FRAMES = 1
"""How many frame periods before it is due a frame is taken from the stream into the pacer."""


def automatic_playout_delay(budget: LatencyBudget) -> float:
    """The session's latency budget, but never more than `MAX_PLAYOUT_DELAY`."""
    return min(budget.total, MAX_PLAYOUT_DELAY)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    fps: float | None
    """None: the renderer's own rate."""
    playout_delay: float | None
    """None: the stream's latency budget, with `render_seconds` and `ENCODE_ALLOWANCE`."""
    echo_audio: bool
    media_timeout: float
    render_seconds: float = 0.0
    """The measured time to render a window (a running 95th percentile) when the session starts."""
    governor: RenderGovernor | None = None
    """The server's overload governor, which may lower the frame rate new windows are drawn at."""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    avatar: str
    transport: str
    """webrtc (a caller's microphone) or websocket (a bot)."""
    state: str
    """WebRTC: the peer connection's state (new, connecting, connected, disconnected, failed, closed); WebSocket:
    open or closing."""
    age_seconds: float
    frames_sent: int
    viewers: int


class MediaOutput(Protocol):
    """Something a session plays out to: a peer's tracks, a viewer, a bot's socket."""

    def on_tick(self, tick: Tick) -> None:
        """A frame slot's time has come (called on the session's clock, once per slot)."""

    def on_audio(self, media_time: float, chunk: AudioChunk) -> None:
        """Voice landed on the timeline at `media_time`; it plays with the frames of that time."""

    def on_interrupt(self) -> None:
        """Drop any voice queued and not yet sent."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Arrival:
    """Where a chunk of audio landed on the timeline, and when it reached the server."""

    start: float
    end: float
    wall_time: float


class SessionCore:
    transport = "none"
    """Subclasses name their transport."""
    max_voice_ahead = 2.0
    """Seconds of voice that can be queued ahead of the clock: an output must hold this much to lose none."""

    def __init__(
        self,
        session_id: str,
        avatar_name: str,
        renderer: Renderer[Any],
        avatar: object,
        config: SessionConfig,
        metrics: ServerMetrics,
        clock: Clock,
        on_closed: Callable[[SessionCore], None],
        stream_settings: StreamSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.avatar_name = avatar_name
        self._config = config
        self._metrics = metrics
        self.clock = clock
        self._on_closed = on_closed
        settings = stream_settings if stream_settings is not None else StreamSettings(fps=config.fps)
        self._stream = AvatarStream(renderer, avatar, settings, clock, governor=config.governor)
        self.fps = self._stream.fps
        self.frame_size = renderer.frame_size
        self.latency_budget = self._stream.latency_budget(render=config.render_seconds, encode=ENCODE_ALLOWANCE)
        self.playout_delay = (
            config.playout_delay if config.playout_delay is not None else automatic_playout_delay(self.latency_budget)
        )
        self._pacer = FramePacer(clock, self.fps, self.playout_delay)
        self._playout = Playout(self._pacer)
        self._outputs: list[MediaOutput] = []
        self._viewers: dict[str, MediaOutput] = {}
        self._upcoming_audio: deque[tuple[float, AudioChunk]] = deque()
        self._created_at = clock.now()
        self._arrivals: deque[_Arrival] = deque(maxlen=ARRIVALS_KEPT)
        self._send_times: deque[float] = deque()
        self.frames_sent = 0
        self._pacer_dropped = 0
        self._pacer_repeated = 0
        self._runner: asyncio.Task[None] | None = None
        self._end_requested = asyncio.Event()
        self._releasing = False
        self._end_reason: str | None = None
        self._closed = asyncio.Event()

    # For transports to fill in.

    @property
    def state(self) -> str:
        return "open"

    def _transport_workers(self) -> list[Coroutine[Any, Any, str]]:
        """Coroutines run for the session's life; the first to return ends it, its result the reason."""
        return []

    def _on_tick(self, tick: Tick) -> None:
        """A frame slot's time has come: what the transport itself sends with it (before the outputs get it)."""

    def _before_start(self) -> None:
        """Check the transport is ready; raise `RuntimeError` if it is not."""

    async def _release_transport(self) -> None:
        """Release what the transport holds; called once, after the workers have stopped."""

    # The session.

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def pacer_stats(self) -> tuple[int, int]:
        """(frames dropped as late, frames repeated) so far."""
        return self._pacer.stats.dropped, self._pacer.stats.repeated

    @property
    def degraded(self) -> bool:
        """Whether new windows are being drawn at a lower frame rate (overload)."""
        return self._stream.degraded

    @property
    def viewer_count(self) -> int:
        return len(self._viewers)

    def summary(self) -> SessionSummary:
        return SessionSummary(
            session_id=self.session_id,
            avatar=self.avatar_name,
            transport=self.transport,
            state=self.state,
            age_seconds=round(self.clock.now() - self._created_at, 3),
            frames_sent=self.frames_sent,
            viewers=self.viewer_count,
        )

    def send_time(self, media_time: float) -> float:
        """Clock time at which media time `media_time` goes out: its frame, and the voice from it."""
        return self._stream.origin + media_time + self.playout_delay

    async def start(self) -> None:
        """Start the stream's clock and the session's tasks; frames are rendered from now on."""
        self._before_start()
        await self._stream.start()
        self._pacer.anchor(0.0, self._stream.origin)
        self._runner = asyncio.create_task(self._run(), name=f"session-{self.session_id}")

    def end(self, reason: str) -> None:
        """Ask the session to end; returns at once. The first reason given is the one recorded."""
        if self._end_reason is None:
            self._end_reason = reason
        self._end_requested.set()

    async def close(self, reason: str) -> None:
        """End the session and wait until everything it holds is released."""
        self.end(reason)
        if self._runner is None and not self._releasing:
            await self._release()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def add_output(self, output: MediaOutput) -> None:
        """Play out to `output` from the next tick on, with the voice already queued for what is still to come."""
        self._outputs.append(output)
        for media_time, chunk in self._upcoming_audio:
            output.on_audio(media_time, chunk)

    async def remove_output(self, output: MediaOutput) -> None:
        if output in self._outputs:
            self._outputs.remove(output)
            await output.aclose()

    def add_viewer(self, viewer_id: str, viewer: MediaOutput) -> None:
        self._viewers[viewer_id] = viewer
        self._metrics.viewers_active.inc()
        self.add_output(viewer)

    async def remove_viewer(self, viewer_id: str) -> bool:
        """False when there is no such viewer (any more)."""
        viewer = self._viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        self._metrics.viewers_active.dec()
        await self.remove_output(viewer)
        return True

    def push_audio(self, chunk: AudioChunk) -> float:
        """Add 16 kHz mono audio to the timeline; returns the media time it landed at."""
        start = self._stream.push_audio(chunk)
        self._arrivals.append(_Arrival(start, start + chunk.duration, self.clock.now()))
        self._upcoming_audio.append((start, chunk))
        for output in self._outputs:
            output.on_audio(start, chunk)
        return start

    def interrupt(self) -> float:
        """Drop every queued frame and voice and go idle; returns the media time from which frames are idle."""
        self._stream.interrupt()
        self._pacer.clear()
        self._upcoming_audio.clear()
        for output in self._outputs:
            output.on_interrupt()
        self._metrics.interrupts.inc()
        return self._playout.next_media_time

    async def _run(self) -> None:
        """Run until a worker returns or `end()` is called; then release everything. Ending is an event this task
        waits for, never a cancellation, so the release always runs to completion."""
        frames = asyncio.create_task(self._forward_frames(), name=f"session-{self.session_id}-frames")
        workers = [
            *(asyncio.create_task(work, name=f"session-{self.session_id}-io") for work in self._transport_workers()),
            frames,
            asyncio.create_task(self._play(), name=f"session-{self.session_id}-clock"),
        ]
        end_requested = asyncio.create_task(self._end_requested.wait(), name=f"session-{self.session_id}-end")
        try:
            done, _ = await asyncio.wait([*workers, end_requested], return_when=asyncio.FIRST_COMPLETED)
            for worker in done & set(workers):
                error = worker.exception()
                if error is None:
                    self.end(str(worker.result()))
                    continue
                logger.error("session %s failed", self.session_id, exc_info=error)
                # The stream re-raises a renderer's failure from the frames it hands out.
                self.end("render_error" if worker is frames else "internal_error")
        finally:
            for task in [*workers, end_requested]:
                task.cancel()
            await asyncio.gather(*workers, end_requested, return_exceptions=True)
            await self._release()

    async def _forward_frames(self) -> str:
        lead = FORWARD_LEAD_FRAMES / self.fps
        async for frame in self._stream:
            self._pacer.push(frame)
            await self.clock.sleep_until(self.send_time((frame.index + 1) / self.fps) - lead)
        return "stream_ended"

    async def _play(self) -> str:
        while True:
            tick = await self._playout.next_tick()
            self._count_sent(tick)
            while self._upcoming_audio and self._upcoming_audio[0][0] + self._upcoming_audio[0][1].duration <= (
                tick.media_time
            ):
                self._upcoming_audio.popleft()
            self._on_tick(tick)
            for output in list(self._outputs):
                output.on_tick(tick)

    def _count_sent(self, tick: Tick) -> None:
        now = self.clock.now()
        self.frames_sent += 1
        self._metrics.frames_sent.inc()
        self._send_times.append(now)
        while self._send_times[0] < now - FPS_WINDOW:
            self._send_times.popleft()
        self._metrics.session_fps.labels(session=self.session_id).set(len(self._send_times) / FPS_WINDOW)
        dropped, repeated = self.pacer_stats
        self._metrics.frames_dropped.inc(dropped - self._pacer_dropped)
        self._metrics.frames_repeated.inc(repeated - self._pacer_repeated)
        self._pacer_dropped, self._pacer_repeated = dropped, repeated
        if not tick.repeated:
            arrival = self._arrival_of(tick.frame.pts + 1 / self.fps)
            if arrival is not None:
                self._metrics.end_to_end_latency.observe(now - arrival)

    def _arrival_of(self, media_time: float) -> float | None:
        """When the audio at `media_time` reached the server; None where the timeline holds silence the stream
        filled in."""
        while self._arrivals and self._arrivals[0].end < media_time:
            self._arrivals.popleft()
        if self._arrivals and self._arrivals[0].start <= media_time:
            return self._arrivals[0].wall_time
        return None

    async def _release(self) -> None:
        self._releasing = True
        try:
            await self._stream.aclose()
            outputs, self._outputs = self._outputs, []
            self._metrics.viewers_active.dec(len(self._viewers))
            self._viewers.clear()
            await asyncio.gather(*(output.aclose() for output in outputs), return_exceptions=True)
            await self._release_transport()
        finally:
            reason = self._end_reason or "closed"
            self._metrics.sessions_ended.labels(reason=reason).inc()
            if self.frames_sent:
                self._metrics.session_fps.remove(self.session_id)
            logger.info("session %s ended (%s) after %d frames", self.session_id, reason, self.frames_sent)
            self._closed.set()
            self._on_closed(self)
            # A session sits in reference cycles (callbacks bound to it, aiortc's peer connection), which only a
            # full collection frees; until then a dead session keeps its frames and the threads of its codecs and
            # libav filters, and the collector's own thresholds let dozens pile up. Collecting as each session
            # ends frees the ones before it (this one is still referenced from here).
            gc.collect()
