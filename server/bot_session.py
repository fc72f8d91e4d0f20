"""A bot's session over the WebSocket API: PCM in, and back either frames with the voice (`output: "frames"`) or
only events (`output: "viewer"`, people watch through the viewer link).

The transport half of a session; the rest is `SessionCore`. Audio path: binary messages (PCM16 at the start's
rate) → `AudioResampler` (16 kHz) → the core's stream; the bot's own samples are kept on the same timeline
(`VoiceTimeline`) to go back with the frames they play with. A bot sends faster than real time; the session's
clock paces what comes back, at most `MAX_QUEUED_SPEECH` seconds of audio ahead of it.

Every server-to-client message goes through one `MediaSender`, in order and bounded for a slow reader. Refusals
during the session are `error` events and the session goes on; a client that keeps sending bad messages is
closed with 1008 after `MAX_ERRORS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.bot_protocol import (
    Close,
    CloseCode,
    Closed,
    Error,
    Flush,
    Interrupt,
    Interrupted,
    MediaHeader,
    MediaKind,
    ProtocolError,
    SpeechEnded,
    SpeechStarted,
    Start,
    Started,
    Stats,
    event_message,
    parse_control,
)
from server.bot_sender import MediaSender
from server.metrics import ServerMetrics
from server.playout import Tick
from server.session_core import SessionConfig, SessionCore
from server.voice_timeline import VoiceTimeline
from streaming.avatar_stream import StreamSettings
from streaming.clock import Clock
from streaming.frames import AudioChunk
from streaming.renderer import Renderer
from streaming.resampler import AudioResampler

logger = logging.getLogger(__name__)

MAX_QUEUED_SPEECH = 60.0
"""Seconds of a bot's audio the session holds ahead of its clock; more is refused with `audio_overflow`."""
STATS_INTERVAL = 1.0
MAX_ERRORS = 50
"""Refused messages a session tolerates before it closes the connection (1008)."""
CLOSE_TIMEOUT = 2.0
"""Seconds the last events and the close frame may take to write before the connection is left to close."""

_CLOSE_CODES = {
    "client_closed": CloseCode.NORMAL,
    "hang_up": CloseCode.NORMAL,
    "server_shutdown": CloseCode.GOING_AWAY,
    "too_many_errors": CloseCode.POLICY_VIOLATION,
}
_FAILURES = {
    "render_error": "the renderer failed, so this session cannot go on (the server's log has the details)",
    "internal_error": "the server failed while running this session (its log has the details)",
}
"""Endings that are the server's fault: the client is sent an `error` event before `closed`, and close code 1011."""


class BotSession(SessionCore):
    transport = "websocket"
    max_voice_ahead = MAX_QUEUED_SPEECH + 2.0

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
        socket: WebSocket,
        start: Start,
        viewer_url: str,
    ) -> None:
        # The stream must never drop a bot's audio for being ahead: the session refuses it first.
        settings = StreamSettings(fps=config.fps, max_queued_audio=MAX_QUEUED_SPEECH + 5.0)
        super().__init__(session_id, avatar_name, renderer, avatar, config, metrics, clock, on_closed, settings)
        self._socket = socket
        self._start_message = start
        self._frames = start.output == "frames"
        self._voice = VoiceTimeline(start.sample_rate, self.fps) if self._frames and start.send_audio else None
        self._sender = MediaSender(self._send, fps=self.fps, jpeg_quality=start.jpeg_quality, on_drop=self._count_drop)
        self._resampler = AudioResampler()
        self._unplaced: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._speech_end = 0.0
        self._speaking = False
        self._audio_sequence = 0
        self._errors = 0
        self._closing = False
        width, height = self.frame_size
        self._sender.send_event(Started(session_id, self.fps, width, height, self.playout_delay, viewer_url))

    @property
    def state(self) -> str:
        return "closing" if self._closing else "open"

    @property
    def queued_speech(self) -> float:
        """Seconds of the bot's audio received and not yet played out."""
        return max(0.0, self._speech_end - self._playout.next_media_time)

    def _transport_workers(self) -> list[Coroutine[Any, Any, str]]:
        return [self._receive(), self._write(), self._report_stats()]

    # In: the bot's messages.

    async def _receive(self) -> str:
        while True:
            message = await self._socket.receive()
            if message["type"] == "websocket.disconnect":
                return "client_disconnected"
            data = message.get("bytes")
            try:
                if data is not None:
                    self._receive_pcm(data)
                    continue
                control = parse_control(message.get("text") or "")
                if isinstance(control, Close):
                    return "client_closed"
                if isinstance(control, Flush):
                    self._flush()
                elif isinstance(control, Interrupt):
                    self._interrupt()
                else:
                    raise ProtocolError("already_started", "the session has started; a second start is ignored")
            except ProtocolError as error:
                if not self._refuse(error):
                    return "too_many_errors"

    def _receive_pcm(self, data: bytes) -> None:
        if len(data) % 2:
            raise ProtocolError(
                "odd_pcm_length", f"PCM16 comes in whole 2-byte samples; a message of {len(data)} bytes was dropped"
            )
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        duration = len(pcm) / self._start_message.sample_rate
        if self.queued_speech + duration > MAX_QUEUED_SPEECH:
            raise ProtocolError(
                "audio_overflow",
                f"{self.queued_speech:.1f} s of audio are already waiting to play (the limit is "
                f"{MAX_QUEUED_SPEECH:.0f} s); {duration:.2f} s were dropped: send closer to real time",
            )
        self._unplaced.append(pcm)
        self._land(self._resampler.resample_pcm(pcm, self._start_message.sample_rate, 1))

    def _land(self, chunk: AudioChunk | None) -> None:
        """Put resampled audio on the timeline, and the bot's own samples behind it where they go back."""
        if chunk is None:
            return
        landed = self.push_audio(chunk)
        self._speech_end = landed + chunk.duration
        if self._voice is not None and self._unplaced:
            self._voice.place(landed, np.concatenate(self._unplaced))
        self._unplaced.clear()

    def _flush(self) -> None:
        # The resampler holds the last few milliseconds in its filter until told no more are coming.
        self._land(self._resampler.flush())
        self._unplaced.clear()

    def _interrupt(self) -> None:
        resume = self.interrupt()
        self._resampler = AudioResampler()
        self._unplaced.clear()
        self._speech_end = 0.0
        if self._voice is not None:
            self._voice.clear()
        self._sender.send_event(Interrupted(resume))

    def _refuse(self, error: ProtocolError) -> bool:
        """Tell the client; False once it has had too many refusals."""
        self._metrics.protocol_errors.labels(code=error.code).inc()
        self._errors += 1
        self._sender.send_event(Error(error.code, error.message))
        return self._errors < MAX_ERRORS

    # Out: events and media, through the sender.

    def _on_tick(self, tick: Tick) -> None:
        if tick.frame.speaking != self._speaking:
            self._speaking = tick.frame.speaking
            self._sender.send_event((SpeechStarted if self._speaking else SpeechEnded)(tick.media_time))
        if not self._frames:
            return
        self._sender.send_video(tick)
        if self._voice is not None:
            pcm = self._voice.take(tick.slot)
            header = MediaHeader(MediaKind.AUDIO, tick.frame.speaking, self._audio_sequence, tick.media_time)
            self._audio_sequence += 1
            self._sender.send_audio(header, pcm.astype("<i2").tobytes(), len(pcm) / self._voice.sample_rate)

    async def _send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._socket.send_text(message)
        else:
            await self._socket.send_bytes(message)

    async def _write(self) -> str:
        try:
            await self._sender.run()
        except WebSocketDisconnect:
            pass
        return "client_disconnected"

    async def _report_stats(self) -> str:
        next_report = self.clock.now()
        while True:
            next_report += STATS_INTERVAL
            await self.clock.sleep_until(next_report)
            late, repeated = self.pacer_stats
            self._sender.send_event(
                Stats(
                    frames_sent=self.frames_sent,
                    frames_late=late,
                    frames_repeated=repeated,
                    video_dropped=self._sender.video_dropped,
                    audio_dropped=self._sender.audio_dropped,
                    send_backlog=round(self._sender.backlog, 3),
                    queued_speech=round(self.queued_speech, 3),
                    viewers=self.viewer_count,
                )
            )

    def _count_drop(self, kind: str) -> None:
        self._metrics.slow_reader_dropped.labels(kind=kind).inc()

    async def _release_transport(self) -> None:
        self._closing = True
        reason = self.end_reason or "closed"
        if reason == "client_disconnected":
            return
        code = _CLOSE_CODES.get(reason, CloseCode.INTERNAL_ERROR)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                failure = [Error(reason, _FAILURES[reason])] if reason in _FAILURES else []
                for event in [*self._sender.pending_events(), *failure, Closed(reason)]:
                    await self._socket.send_text(event_message(event))
                await self._socket.close(code, reason)
        except (TimeoutError, WebSocketDisconnect, RuntimeError) as error:
            # RuntimeError: Starlette's word for a socket that is already closed.
            logger.info("session %s: could not say goodbye (%r)", self.session_id, error)
