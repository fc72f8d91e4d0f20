"""A WebRTC session: the caller's microphone in, the avatar's video (and optionally the voice) out.

The transport half of a session; the rest is `SessionCore`. Audio path: WebRTC microphone track →
`AudioResampler` (16 kHz mono) → the core's stream → one tick per frame slot → `PeerOutput` (the video track and
the echoed voice) → WebRTC.

Besides the core's endings, a WebRTC session ends when the peer connection fails or closes, and when the
microphone falls silent for `media_timeout`: `ice_timeout` when the connection never came up (candidates that
lead nowhere), `media_timeout` when it did and the client then vanished without a word (a closed lid, a dead
network). The media timeout is shorter than ICE's own consent expiry (about 30 s in aioice), so it is what reaps a
vanished client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.metrics import ServerMetrics
from server.session_core import SessionConfig, SessionCore
from server.tracks import PeerOutput
from streaming.clock import Clock
from streaming.renderer import Renderer
from streaming.resampler import AudioResampler


class Session(SessionCore):
    transport = "webrtc"

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
        super().__init__(
            session_id, avatar_name, renderer, avatar, config, metrics, clock, on_closed=lambda _: on_closed(self)
        )
        self.peer = peer
        self._caller = PeerOutput(clock, self.send_time, voice=config.echo_audio)
        self.video_track = self._caller.video
        self.echo_track = self._caller.voice
        self.add_output(self._caller)
        self._resampler = AudioResampler()
        self._microphone: MediaStreamTrack | None = None
        self._connected = False
        peer.on("connectionstatechange", self._on_connection_state)

    @property
    def state(self) -> str:
        state: str = self.peer.connectionState
        return state

    def attach_microphone(self, track: MediaStreamTrack) -> None:
        self._microphone = track

    def _before_start(self) -> None:
        if self._microphone is None:
            raise RuntimeError("attach the microphone before starting the session")

    def _transport_workers(self) -> list[Coroutine[Any, Any, str]]:
        return [self._receive_microphone()]

    async def _receive_microphone(self) -> str:
        assert self._microphone is not None
        while True:
            try:
                # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that lands as the frame arrives.
                async with asyncio.timeout(self._config.media_timeout):
                    frame = await self._microphone.recv()
            except TimeoutError:
                return "media_timeout" if self._connected else "ice_timeout"
            except MediaStreamError:
                return "microphone_ended"
            if not isinstance(frame, av.AudioFrame):
                continue
            chunk = self._resampler.resample(frame)
            if chunk is not None:
                self.push_audio(chunk)

    def _on_connection_state(self) -> None:
        state = self.peer.connectionState
        if state == "connected":
            self._connected = True
        elif state == "failed":
            self.end("connection_failed")
        elif state == "closed":
            self.end("peer_closed")

    async def _release_transport(self) -> None:
        await self.peer.close()
