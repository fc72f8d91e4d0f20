"""One session on its own, with a fake peer connection: how each kind of ending releases what it started."""

from __future__ import annotations

import asyncio
from typing import cast

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from pyee.asyncio import AsyncIOEventEmitter

from server.metrics import ServerMetrics
from server.session import Session
from server.session_core import SessionConfig
from server.speaking_track import SpeakingTrack
from streaming.clock import MonotonicClock
from tests.server.fake_renderer import FakeAvatar, LoudnessRenderer


class FakePeer(AsyncIOEventEmitter):
    """The parts of `RTCPeerConnection` a session uses; a test sets the connection state."""

    def __init__(self) -> None:
        super().__init__()
        self.connectionState = "connecting"
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    def change_state(self, state: str) -> None:
        self.connectionState = state
        self.emit("connectionstatechange")


def session_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith(("session-", "avatar-stream"))]


def new_session(*, echo_audio: bool = True, media_timeout: float = 5.0) -> tuple[Session, FakePeer, list[Session]]:
    """A session on a fake peer, not started; and the list its `on_closed` callback appends to."""
    peer = FakePeer()
    closed: list[Session] = []
    session = Session(
        "s1",
        "default",
        cast(RTCPeerConnection, peer),
        LoudnessRenderer(),
        FakeAvatar((64, 64, 3)),
        SessionConfig(fps=None, playout_delay=0.05, echo_audio=echo_audio, media_timeout=media_timeout),
        ServerMetrics(),
        MonotonicClock(),
        on_closed=closed.append,
    )
    return session, peer, closed


class MuteMicrophone(MediaStreamTrack):
    """A microphone track that stays live and never delivers a frame: a client gone without a word."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        never: asyncio.Future[av.AudioFrame] = asyncio.get_running_loop().create_future()
        return await never


async def started_session(
    media_timeout: float = 5.0, microphone: MediaStreamTrack | None = None
) -> tuple[Session, FakePeer, list[Session]]:
    session, peer, closed = new_session(media_timeout=media_timeout)
    session.attach_microphone(microphone or SpeakingTrack(np.zeros(48_000, dtype=np.float32)))
    await session.start()
    return session, peer, closed


async def wait_closed(session: Session) -> None:
    async with asyncio.timeout(5.0):
        await session.wait_closed()


@pytest.mark.parametrize(("state", "reason"), [("failed", "connection_failed"), ("closed", "peer_closed")])
async def test_a_failed_or_closed_connection_ends_the_session_and_releases_everything(state: str, reason: str) -> None:
    session, peer, closed = await started_session()
    assert session_tasks(), "a started session runs its tasks"
    peer.change_state("connected")
    await asyncio.sleep(0.2)
    assert not session.closed

    peer.change_state(state)
    await wait_closed(session)

    assert session.end_reason == reason
    assert peer.closed
    assert session.video_track.readyState == "ended"
    assert session.echo_track is not None and session.echo_track.readyState == "ended"
    assert closed == [session]
    assert session_tasks() == []


async def test_a_silent_microphone_ends_the_session_after_the_media_timeout() -> None:
    session, peer, closed = await started_session(media_timeout=0.3, microphone=MuteMicrophone())
    peer.change_state("connected")
    assert session.summary().state == "connected"
    await wait_closed(session)
    assert session.end_reason == "media_timeout"
    assert peer.closed and closed == [session] and session_tasks() == []


async def test_a_connection_that_never_comes_up_ends_the_session_after_the_media_timeout() -> None:
    session, peer, closed = await started_session(media_timeout=0.3, microphone=MuteMicrophone())
    assert session.summary().state == "connecting"
    await wait_closed(session)
    assert session.end_reason == "ice_timeout"
    assert peer.closed and closed == [session] and session_tasks() == []


async def test_a_microphone_track_that_ends_ends_the_session() -> None:
    microphone = SpeakingTrack(np.zeros(48_000, dtype=np.float32))
    session, peer, closed = await started_session(microphone=microphone)
    microphone.stop()
    await wait_closed(session)
    assert session.end_reason == "microphone_ended"
    assert peer.closed and closed == [session] and session_tasks() == []


async def test_closing_twice_and_a_late_state_change_are_harmless() -> None:
    session, peer, closed = await started_session()
    await session.close("hang_up")
    await session.close("server_shutdown")
    peer.change_state("closed")
    await asyncio.sleep(0.05)
    assert session.end_reason == "hang_up"
    assert closed == [session]
    assert session_tasks() == []


async def test_a_session_that_never_started_still_releases_its_peer() -> None:
    session, peer, closed = new_session(echo_audio=False, media_timeout=1.0)
    await session.close("negotiation_failed")
    assert peer.closed and closed == [session] and session.end_reason == "negotiation_failed"
