"""One live session: the caller's microphone in, the avatar's video (and optionally the voice) out.

Audio path: WebRTC microphone track → `AudioResampler` (16 kHz mono) → `AvatarStream` (VAD, windows, renderer)
→ `FramePacer` → `AvatarVideoTrack` → WebRTC. The stream's timeline starts at `start()`; the pacer is anchored
there, and the echoed voice is sent on the same schedule, `playout_delay` behind the stream's clock.

A session ends on hang-up, when the peer connection fails or closes, when the microphone falls silent for
`media_timeout` (the client vanished without a word), or when rendering fails. Ending releases everything it
started: its tasks, the stream's worker, the tracks and the peer connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.metrics import ServerMetrics
from server.tracks import AvatarVideoTrack, EchoAudioTrack
from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import Clock
from streaming.frames import AudioChunk, VideoFrame
from streaming.latency_budget import LatencyBudget
from streaming.pacer import FramePacer
from streaming.renderer import Renderer
from streaming.resampler import AudioResampler

logger = logging.getLogger(__name__)

FPS_WINDOW = 1.0
"""Seconds over which a session's sent frame rate is measured."""
ENCODE_ALLOWANCE = 0.02
"""Seconds allowed for handing a frame to the video encoder, beyond its render time."""
MAX_PLAYOUT_DELAY = 2.0
"""A renderer slower than this cannot hold a conversation; frames later than this are dropped rather than the
whole session lagging further (the warm-up logs that the renderer cannot keep up)."""
ARRIVALS_KEPT = 1000
"""Microphone chunks remembered for the latency metric: 20 s of 20 ms packets, far more than the playout delay."""


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


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    avatar: str
    state: str
    """The peer connection's state: new, connecting, connected, disconnected, failed or closed."""
    age_seconds: float
    frames_sent: int


@dataclass(frozen=True, slots=True)
class _Arrival:
    """Where a chunk of microphone audio landed on the timeline, and when it reached the server."""

    start: float
    end: float
    wall_time: float


class Session:
    def __init__(
        self,
        session_id: str,
        avatar_name: str,
        peer: RTCPeerConnection,
        renderer: Renderer[Any],
        avatar: object,
        config: SessionConfig,
        metrics: ServerMetrics,
        clock: Clock,
        on_closed: Callable[[Session], None],
    ) -> None:
        self.session_id = session_id
        self.avatar_name = avatar_name
        self.peer = peer
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._on_closed = on_closed
        self._stream = AvatarStream(renderer, avatar, StreamSettings(fps=config.fps), clock)
        self.fps = self._stream.fps
        self.latency_budget = self._stream.latency_budget(render=config.render_seconds, encode=ENCODE_ALLOWANCE)
        self.playout_delay = (
            config.playout_delay if config.playout_delay is not None else automatic_playout_delay(self.latency_budget)
        )
        self._pacer = FramePacer(clock, self.fps, self.playout_delay)
        self.video_track = AvatarVideoTrack(self._pacer, self._on_frame_sent)
        self.echo_track = EchoAudioTrack(clock, self._send_time) if config.echo_audio else None
        self._resampler = AudioResampler()
        self._microphone: MediaStreamTrack | None = None
        self._created_at = clock.now()
        self._arrivals: deque[_Arrival] = deque(maxlen=ARRIVALS_KEPT)
        self._send_times: deque[float] = deque()
        self._frames_sent = 0
        self._pacer_dropped = 0
        self._pacer_repeated = 0
        self._runner: asyncio.Task[None] | None = None
        self._end_requested = asyncio.Event()
        self._releasing = False
        self._end_reason: str | None = None
        self._closed = asyncio.Event()
        peer.on("connectionstatechange", self._on_connection_state)

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def summary(self) -> SessionSummary:
        return SessionSummary(
            session_id=self.session_id,
            avatar=self.avatar_name,
            state=self.peer.connectionState,
            age_seconds=round(self._clock.now() - self._created_at, 3),
            frames_sent=self._frames_sent,
        )

    def attach_microphone(self, track: MediaStreamTrack) -> None:
        self._microphone = track

    async def start(self) -> None:
        """Start the stream's clock and the session's tasks; frames are rendered from now on."""
        if self._microphone is None:
            raise RuntimeError("attach the microphone before starting the session")
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

    async def _run(self) -> None:
        """Run until the microphone or the stream stops, or `end()` is called; then release everything. Ending is
        an event this task waits for, never a cancellation, so the release always runs to completion."""
        workers = [
            asyncio.create_task(self._receive_microphone(), name=f"session-{self.session_id}-microphone"),
            asyncio.create_task(self._forward_frames(), name=f"session-{self.session_id}-frames"),
        ]
        end_requested = asyncio.create_task(self._end_requested.wait(), name=f"session-{self.session_id}-end")
        try:
            done, _ = await asyncio.wait([*workers, end_requested], return_when=asyncio.FIRST_COMPLETED)
            for worker in done & set(workers):
                error = worker.exception()
                if error is not None:
                    logger.error("session %s failed", self.session_id, exc_info=error)
                self.end("render_error" if error is not None else str(worker.result()))
        finally:
            for task in [*workers, end_requested]:
                task.cancel()
            await asyncio.gather(*workers, end_requested, return_exceptions=True)
            await self._release()

    async def _receive_microphone(self) -> str:
        assert self._microphone is not None
        while True:
            try:
                # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that lands as the frame arrives.
                async with asyncio.timeout(self._config.media_timeout):
                    frame = await self._microphone.recv()
            except TimeoutError:
                return "media_timeout"
            except MediaStreamError:
                return "microphone_ended"
            if not isinstance(frame, av.AudioFrame):
                continue
            chunk = self._resampler.resample(frame)
            if chunk is not None:
                self._push_audio(chunk)

    def _push_audio(self, chunk: AudioChunk) -> None:
        start = self._stream.push_audio(chunk)
        self._arrivals.append(_Arrival(start, start + chunk.duration, self._clock.now()))
        if self.echo_track is not None:
            self.echo_track.push(start, chunk)

    async def _forward_frames(self) -> str:
        async for frame in self._stream:
            self._pacer.push(frame)
        return "stream_ended"

    def _send_time(self, media_time: float) -> float:
        return self._stream.origin + media_time + self.playout_delay

    def _on_frame_sent(self, frame: VideoFrame, repeated: bool) -> None:
        now = self._clock.now()
        self._frames_sent += 1
        self._metrics.frames_sent.inc()
        self._send_times.append(now)
        while self._send_times[0] < now - FPS_WINDOW:
            self._send_times.popleft()
        self._metrics.session_fps.labels(session=self.session_id).set(len(self._send_times) / FPS_WINDOW)
        stats = self._pacer.stats
        self._metrics.frames_dropped.inc(stats.dropped - self._pacer_dropped)
        self._metrics.frames_repeated.inc(stats.repeated - self._pacer_repeated)
        self._pacer_dropped, self._pacer_repeated = stats.dropped, stats.repeated
        if not repeated:
            arrival = self._arrival_of(frame.pts + 1 / self.fps)
            if arrival is not None:
                self._metrics.end_to_end_latency.observe(now - arrival)

    def _arrival_of(self, media_time: float) -> float | None:
        """When the microphone audio at `media_time` reached the server; None where the timeline holds silence
        the stream filled in."""
        while self._arrivals and self._arrivals[0].end < media_time:
            self._arrivals.popleft()
        if self._arrivals and self._arrivals[0].start <= media_time:
            return self._arrivals[0].wall_time
        return None

    def _on_connection_state(self) -> None:
        state = self.peer.connectionState
        if state == "failed":
            self.end("connection_failed")
        elif state == "closed":
            self.end("peer_closed")

    async def _release(self) -> None:
        self._releasing = True
        try:
            await self._stream.aclose()
            self.video_track.stop()
            if self.echo_track is not None:
                self.echo_track.stop()
            await self.peer.close()
        finally:
            reason = self._end_reason or "closed"
            self._metrics.sessions_ended.labels(reason=reason).inc()
            if self._frames_sent:
                self._metrics.session_fps.remove(self.session_id)
            logger.info("session %s ended (%s) after %d frames", self.session_id, reason, self._frames_sent)
            self._closed.set()
            self._on_closed(self)
