"""Signalling end to end with two aiortc peers on loopback: video at the session's rate, the mouth following the
voice, both video codecs, the echoed voice, and every way a session ends."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import replace

import httpx2
import numpy as np
import numpy.typing as npt
import pytest

from server.settings import ServerSettings
from tests.server.conftest import LEAD_IN, serving
from tests.server.loopback_call import LoopbackCall

OPEN = 0.3
"""Mouth openings above this count as open (the fake renderer opens fully at speaking volume)."""


async def streaming_call(http: httpx2.AsyncClient, speech: npt.NDArray[np.float32], frames: int = 5) -> LoopbackCall:
    """A call the server accepted, once `frames` video frames have come back."""
    call = LoopbackCall(http, speech)
    response = await call.start()
    assert response.status_code == 201, response.text
    await call.wait_for_frames(frames)
    return call


async def wait_until_no_sessions(http: httpx2.AsyncClient) -> None:
    """Poll the session list for up to 10 s."""
    for _ in range(200):
        if not (await http.get("/api/sessions")).json()["sessions"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session was still listed 10 s later")


def metric(exposition: str, name: str) -> float:
    """The value of one sample line in Prometheus text format."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_frames_arrive_at_the_requested_rate_and_the_mouth_follows_the_voice(
    settings: ServerSettings, speech: npt.NDArray[np.float32], codec: str
) -> None:
    fps = 20.0
    async with serving(replace(settings, fps=fps)) as http:
        call = LoopbackCall(http, speech, video_codec=codec)
        response = await call.start()
        assert response.status_code == 201, response.text
        assert codec.split("/")[1] in call.answer_sdp
        await call.wait_for_frames(round(fps * (LEAD_IN + 2.0)))
        frames = list(call.frames)
        await call.close()

    steps = np.diff([frame.pts for frame in frames])
    assert statistics.median(steps.tolist()) == pytest.approx(90_000 / fps, abs=2)
    # The stamps above say the rate exactly; arrival times on a loaded machine only roughly, so the bounds are
    # wide: frames come in real time, and not at the renderer's own 25 fps.
    arrival_rate = (len(frames) - 1) / (frames[-1].arrival - frames[0].arrival)
    assert 0.5 * fps < arrival_rate < 1.2 * fps, arrival_rate
    assert {(frame.width, frame.height) for frame in frames} == {(160, 160)}
    openings = [frame.opening for frame in frames]
    assert openings[0] < OPEN, "the mouth is closed before anyone speaks"
    assert max(openings) > OPEN, "the mouth opens when the voice comes"
    assert call.echo_frames > 0, "the voice is echoed back"


async def test_hang_up_ends_the_session_and_frees_its_slot(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(replace(settings, max_sessions=1)) as http:
        first = await streaming_call(http, speech, frames=10)

        hang_up = await http.delete(f"/api/sessions/{first.session_id}")
        assert hang_up.status_code == 204
        assert (await http.get("/api/sessions")).json()["sessions"] == []
        again = await http.delete(f"/api/sessions/{first.session_id}")
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "unknown_session"

        # The slot is free again.
        second = await streaming_call(http, speech)
        metrics = (await http.get("/metrics")).text
        await first.close()
        await second.close()
    assert 'echolive_sessions_ended_total{reason="hang_up"} 1.0' in metrics


async def test_a_client_that_closes_its_connection_ends_its_session(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(settings) as http:
        call = await streaming_call(http, speech)
        await call.close()
        await wait_until_no_sessions(http)


async def test_a_client_that_vanishes_is_dropped_after_the_media_timeout(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(replace(settings, media_timeout=1.0)) as http:
        call = await streaming_call(http, speech)
        # The microphone stops sending but the connection stays up: nothing tells the server the client is gone.
        call.microphone.stop()
        await wait_until_no_sessions(http)
        metrics = (await http.get("/metrics")).text
        await call.close()
    assert 'echolive_sessions_ended_total{reason="media_timeout"} 1.0' in metrics


async def test_a_full_server_refuses_with_503_and_keeps_serving(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(replace(settings, max_sessions=1)) as http:
        first = await streaming_call(http, speech)

        refused = LoopbackCall(http, speech)
        response = await refused.start()
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "server_full"

        before = len(first.frames)
        await first.wait_for_frames(before + 10)
        metrics = (await http.get("/metrics")).text
        await refused.close()
        await first.close()
    assert metric(metrics, "echolive_sessions_rejected_total") == 1
    assert metric(metrics, "echolive_sessions_active") == 1


async def test_bad_requests_get_json_errors_while_a_session_keeps_streaming(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(settings) as http:
        call = await streaming_call(http, speech)

        bad_requests = [
            (http.post("/api/sessions", json={"sdp": "this is not SDP", "type": "offer"}), 400, "malformed_sdp"),
            (http.post("/api/sessions", json={"sdp": call.answer_sdp, "type": "answer"}), 400, "invalid_offer"),
            (http.post("/api/sessions", json={"type": "offer"}), 422, "invalid_request"),
            (
                http.post("/api/sessions", content=b"{not json", headers={"content-type": "application/json"}),
                422,
                "invalid_request",
            ),
            (
                http.post("/api/sessions", json={"sdp": "v=0\r\n" + "a=x\r\n" * 20_000, "type": "offer"}),
                413,
                "upload_too_large",
            ),
            (http.delete("/api/sessions/no-such-session"), 404, "unknown_session"),
            (http.get("/api/no-such-route"), 404, "not_found"),
        ]
        for request, status, code in bad_requests:
            response = await request
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
            assert response.json()["error"]["message"]

        before = len(call.frames)
        await call.wait_for_frames(before + 10)
        health = (await http.get("/healthz")).json()
        await call.close()
    assert health["status"] == "ok" and health["sessions"] == 1


async def test_metrics_report_frames_render_time_and_latency(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    async with serving(settings) as http:
        call = await streaming_call(http, speech, frames=round(25 * (LEAD_IN + 1.0)))
        metrics = (await http.get("/metrics")).text
        await call.close()
    assert metric(metrics, "echolive_frames_sent_total") >= 25
    assert metric(metrics, 'echolive_render_seconds_count{kind="window"}') > 0
    assert metric(metrics, 'echolive_render_seconds_count{kind="idle"}') > 0
    assert metric(metrics, "echolive_end_to_end_latency_seconds_count") > 0
    assert (
        0
        < metric(metrics, "echolive_end_to_end_latency_seconds_sum")
        / metric(metrics, "echolive_end_to_end_latency_seconds_count")
        < 1.0
    )
    assert "echolive_session_fps{session=" in metrics
