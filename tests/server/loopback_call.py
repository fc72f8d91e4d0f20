"""A WebRTC client for the server tests: an aiortc peer that speaks a recording (or watches a session) and records
what comes back.

The server under test runs in the same event loop (through httpx's ASGI transport), so one loopback call is
two real peer connections exchanging real RTP over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import httpx2
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.speaking_track import SpeakingTrack
from tests.server.fake_renderer import mouth_opening

FRAME_WAIT = 15.0
"""Seconds `wait_for_frames` waits before failing the test."""


@dataclass(frozen=True)
class ReceivedFrame:
    arrival: float
    """`time.monotonic()` when the decoded frame came out of the receiver."""
    pts: int
    """RTP timestamp (90 kHz) as aiortc's decoder stamps it."""
    width: int
    height: int
    opening: float


@dataclass
class LoopbackCall:
    """One client session. `start()` posts the offer; on success the call receives until `close()`."""

    http: httpx2.AsyncClient
    speech: npt.NDArray[np.float32]
    video_codec: str | None = None
    """Offer only this video codec ("video/VP8", "video/H264"); None offers every codec aiortc has."""
    read_mouth: Callable[[npt.NDArray[np.uint8]], float] | None = mouth_opening
    """How open the mouth is in a received frame (`ReceivedFrame.opening`); None: not measured (nan)."""
    keep_images: bool = False
    """Keep every decoded frame in `images` too (small frames only: they stay in memory)."""
    frames: list[ReceivedFrame] = field(default_factory=list)
    images: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    echo_frames: int = 0
    session_id: str | None = None
    viewer_id: str | None = None
    answer_sdp: str = ""

    def __post_init__(self) -> None:
        self.peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.microphone = SpeakingTrack(self.speech)
        self._tasks: list[asyncio.Task[None]] = []
        self._frame_arrived = asyncio.Event()

    async def start(self, avatar: str | None = None) -> httpx2.Response:
        self.peer.addTransceiver(self.microphone, direction="sendrecv")
        video = self.peer.addTransceiver("video", direction="recvonly")
        if self.video_codec is not None:
            codecs = RTCRtpSender.getCapabilities("video").codecs
            video.setCodecPreferences([codec for codec in codecs if codec.mimeType == self.video_codec])
        self.peer.on("track", self._on_track)
        await self.peer.setLocalDescription(await self.peer.createOffer())
        body = {"sdp": self.peer.localDescription.sdp, "type": "offer", "avatar": avatar}
        response = await self.http.post("/api/sessions", json=body)
        if response.status_code == 201:
            answer = response.json()
            self.session_id = answer["session_id"]
            self.answer_sdp = answer["sdp"]
            await self.peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        return response

    async def watch(self, session_id: str) -> httpx2.Response:
        """Join session `session_id` as a viewer instead: receive its video and voice, send nothing."""
        self.peer.addTransceiver("video", direction="recvonly")
        self.peer.addTransceiver("audio", direction="recvonly")
        self.peer.on("track", self._on_track)
        await self.peer.setLocalDescription(await self.peer.createOffer())
        body = {"sdp": self.peer.localDescription.sdp, "type": "offer"}
        response = await self.http.post(f"/api/sessions/{session_id}/viewers", json=body)
        if response.status_code == 201:
            answer = response.json()
            self.viewer_id = answer["viewer_id"]
            await self.peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        return response

    async def wait_for_frames(self, count: int) -> None:
        """Wait until `count` frames have arrived in all; fails after `FRAME_WAIT` seconds."""
        async with asyncio.timeout(FRAME_WAIT):
            while len(self.frames) < count:
                self._frame_arrived.clear()
                await self._frame_arrived.wait()

    async def close(self) -> None:
        await self.peer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receive = self._receive_video if track.kind == "video" else self._receive_echo
        self._tasks.append(asyncio.create_task(receive(track)))

    async def _receive_video(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                assert frame.pts is not None
                if self.keep_images:
                    self.images.append(image)
                opening = self.read_mouth(image) if self.read_mouth is not None else math.nan
                self.frames.append(ReceivedFrame(time.monotonic(), frame.pts, frame.width, frame.height, opening))
                self._frame_arrived.set()
        except MediaStreamError:
            return

    async def _receive_echo(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.echo_frames += 1
        except MediaStreamError:
            return
