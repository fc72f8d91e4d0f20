"""One session on its own, with a fake peer connection: how each kind of ending releases what it started."""

from __future__ import annotations

import asyncio
from typing import cast

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from pyee.asyncio import AsyncIOEventEmitter

from server.metrics import ServerMetrics
from server.session import Session, SessionConfig
from streaming.clock import MonotonicClock
from tests.server.fake_renderer import FakeAvatar, LoudnessRenderer
from tests.server.loopback_call import RecordingTrack


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


async def started_session(media_timeout: float = 5.0) -> tuple[Session, FakePeer, list[Session]]:
    peer = FakePeer()
    closed: list[Session] = []
    session = Session(
        "s1",
        "default",
        cast(RTCPeerConnection, peer),
        LoudnessRenderer(),
        FakeAvatar((64, 64, 3)),
        SessionConfig(fps=None, playout_delay=0.05, echo_audio=True, media_timeout=media_timeout),
        ServerMetrics(),
        MonotonicClock(),
        on_closed=closed.append,
    )
    session.attach_microphone(RecordingTrack(np.zeros(48_000, dtype=np.float32)))
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
    session, peer, closed = await started_session(media_timeout=0.3)
    assert session.summary().state == "connecting"
    session._microphone.stop()  # type: ignore[union-attr]
    await wait_closed(session)
    assert session.end_reason in {"media_timeout", "microphone_ended"}
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
    peer = FakePeer()
    closed: list[Session] = []
    session = Session(
        "s2",
        "default",
        cast(RTCPeerConnection, peer),
        LoudnessRenderer(),
        FakeAvatar((64, 64, 3)),
        SessionConfig(fps=None, playout_delay=0.05, echo_audio=False, media_timeout=1.0),
        ServerMetrics(),
        MonotonicClock(),
        on_closed=closed.append,
    )
    await session.close("negotiation_failed")
    assert peer.closed and closed == [session] and session.end_reason == "negotiation_failed"
