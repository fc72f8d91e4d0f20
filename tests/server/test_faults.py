"""Faults a live server meets, each on loopback: a caller that vanishes without hanging up, a call whose ICE never
connects, a renderer that raises mid-session, a bot whose connection drops mid-utterance. Each ends the one session
it hits, frees its slot, says why in the metrics, and leaves the other sessions streaming."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx2
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from server.bot_client import VideoMessage, connect_bot
from server.bot_protocol import Closed, Error, Started, parse_event
from server.settings import ServerSettings
from server.speaking_track import SpeakingTrack
from tests.server.conftest import serving
from tests.server.faulty_renderer import FaultyRenderer
from tests.server.live_server import serve_in_thread
from tests.server.loopback_call import LoopbackCall
from tests.server.test_bot_api import PHRASE, RATE, bot_settings, raw_events, raw_socket, ws_url
from tests.server.test_webrtc_session import metric, streaming_call, wait_until_no_sessions
from tests.streaming.signals import spoken

_CANDIDATE_ADDRESS = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )\S+ \d+", re.MULTILINE)


def ended(metrics: str, reason: str) -> float:
    return metric(metrics, f'echolive_sessions_ended_total{{reason="{reason}"}}')


async def wait_until_gone(http: httpx2.AsyncClient, session_id: str | None) -> None:
    """Poll the session list for up to 10 s until `session_id` is no longer in it."""
    for _ in range(200):
        listed = {session["session_id"] for session in (await http.get("/api/sessions")).json()["sessions"]}
        if session_id not in listed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session_id} was still listed 10 s later")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port on 127.0.0.1 that is bound (so nothing answers "unreachable") but never replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        yield hole.getsockname()[1]


async def test_a_caller_that_vanishes_without_hanging_up_is_reaped_and_its_slot_freed(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(replace(settings, max_sessions=1, media_timeout=1.0)) as http:
        call = await streaming_call(http, speech)
        # The client's sockets go dead at once: no RTCP BYE, no DTLS close, nothing more on the wire.
        for transceiver in call.peer.getTransceivers():
            ice = transceiver.receiver.transport.transport
            for protocol in ice._connection._protocols:
                protocol.transport.close()
        await wait_until_no_sessions(http)
        metrics = (await http.get("/metrics")).text
        health = (await http.get("/healthz")).json()
        successor = await streaming_call(http, speech)
        await successor.close()
        await call.close()
    assert ended(metrics, "media_timeout") == 1
    assert health["sessions"] == 0


async def test_a_call_whose_ice_never_connects_is_reaped_after_the_media_timeout(
    settings: ServerSettings, speech: npt.NDArray[np.float32], silent_port: int
) -> None:
    async with serving(replace(settings, media_timeout=1.0)) as http:
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer.addTransceiver(SpeakingTrack(speech), direction="sendrecv")
        peer.addTransceiver("video", direction="recvonly")
        await peer.setLocalDescription(await peer.createOffer())
        # Every candidate points at a socket that never answers, so the server's checks all go unanswered.
        sdp = _CANDIDATE_ADDRESS.sub(rf"\g<1>127.0.0.1 {silent_port}", peer.localDescription.sdp)
        response = await http.post("/api/sessions", json={"sdp": sdp, "type": "offer"})
        assert response.status_code == 201, response.text
        listed = (await http.get("/api/sessions")).json()["sessions"]
        await wait_until_no_sessions(http)
        metrics = (await http.get("/metrics")).text
        await peer.close()
    assert [session["state"] in ("new", "connecting") for session in listed] == [True], listed
    assert ended(metrics, "ice_timeout") == 1


async def test_a_renderer_failure_ends_its_webrtc_session_while_another_keeps_streaming(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    renderer = FaultyRenderer()
    async with serving(settings, renderer=renderer) as http:
        healthy = await streaming_call(http, speech)
        renderer.fail_next_session()
        doomed = LoopbackCall(http, speech)
        response = await doomed.start()
        assert response.status_code == 201, response.text
        await wait_until_gone(http, doomed.session_id)
        still_streaming = len(healthy.frames)
        await healthy.wait_for_frames(still_streaming + 25)
        metrics = (await http.get("/metrics")).text
        listed = (await http.get("/api/sessions")).json()["sessions"]
        await doomed.close()
        await healthy.close()
    assert ended(metrics, "render_error") == 1
    assert [session["session_id"] for session in listed] == [healthy.session_id]


@pytest.fixture
def faulty_server(tmp_path: Path) -> Iterator[tuple[str, FaultyRenderer]]:
    renderer = FaultyRenderer()
    with serve_in_thread(create_app(bot_settings(tmp_path), renderer=renderer)) as url:
        yield url, renderer


async def test_a_renderer_failure_ends_its_bot_session_with_an_error_event_while_another_keeps_streaming(
    faulty_server: tuple[str, FaultyRenderer],
) -> None:
    url, renderer = faulty_server
    async with connect_bot(ws_url(url)) as healthy, httpx2.AsyncClient(base_url=url) as http:
        renderer.fail_next_session()
        async with raw_socket(url) as doomed:
            await doomed.send(json.dumps({"type": "start", "protocol": 1, "sample_rate": RATE, "output": "viewer"}))
            events = await raw_events(doomed, None)
        videos_after = 0
        async with asyncio.timeout(10):
            async for message in healthy:
                videos_after += isinstance(message, VideoMessage)
                if videos_after == 25:
                    break
        metrics = (await http.get("/metrics")).text
        health = (await http.get("/healthz")).json()
    assert [type(event) for event in events] == [Started, Error, Closed]
    error, closed = events[1], events[2]
    assert isinstance(error, Error) and error.code == "render_error" and error.message
    assert isinstance(closed, Closed) and closed.reason == "render_error"
    assert (doomed.close_code, doomed.close_reason) == (1011, "render_error")
    assert ended(metrics, "render_error") == 1
    assert health["sessions"] == 1, "only the healthy bot is left"


async def test_a_bot_connection_dropped_mid_utterance_ends_its_session_and_spares_the_others(
    faulty_server: tuple[str, FaultyRenderer],
) -> None:
    url, _ = faulty_server
    phrase = np.round(np.clip(spoken(PHRASE, RATE), -1, 1) * 32767).astype(np.int16)
    async with connect_bot(ws_url(url)) as other, httpx2.AsyncClient(base_url=url) as http:
        async with raw_socket(url) as dropped:
            await dropped.send(json.dumps({"type": "start", "protocol": 1, "sample_rate": RATE}))
            started = parse_event(str(await dropped.recv()))
            await dropped.send(phrase[: len(phrase) // 2].astype("<i2").tobytes())
            # Gone mid-utterance: the TCP connection is torn down with no close frame and no flush.
            dropped.transport.abort()
            with pytest.raises(ConnectionClosed):
                await dropped.recv()
        assert isinstance(started, Started)
        await wait_until_gone(http, started.session_id)
        videos_after = 0
        async with asyncio.timeout(10):
            async for message in other:
                videos_after += isinstance(message, VideoMessage)
                if videos_after == 25:
                    break
        metrics = (await http.get("/metrics")).text
        health = (await http.get("/healthz")).json()
    assert ended(metrics, "client_disconnected") == 1
    assert health["sessions"] == 1, "only the other bot is left"
