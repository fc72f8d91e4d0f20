"""Admission by measured headroom through both APIs, on a renderer slow enough that one session takes most of its
one render lane: the second session is refused with a 503 and `Retry-After` (HTTP) or an error event with
`retry_after` and close code 4503 (WebSocket), before any avatar is prepared for it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from server.app import create_app
from server.bot_client import connect_bot
from server.bot_protocol import Error
from server.settings import ServerSettings
from streaming.lite.default_portrait import default_portrait_path
from tests.server.conftest import serving
from tests.server.fake_renderer import SlowRenderer
from tests.server.live_server import serve_in_thread
from tests.server.loopback_call import LoopbackCall
from tests.server.test_bot_api import raw_events, raw_socket, ws_url
from tests.server.test_webrtc_session import streaming_call

SECONDS_PER_FRAME = 0.04
"""At 25 fps a session needs all of one lane (sleeps last at least this long), more than the 80% admission uses."""


def keep_unprepared_avatar(settings: ServerSettings, name: str) -> None:
    """An avatar uploaded in an earlier run: on disk, not prepared until a session asks for it."""
    settings.avatar_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(default_portrait_path(), settings.avatar_dir / f"{name}.png")


async def test_an_offer_without_headroom_is_refused_with_503_before_its_avatar_is_prepared(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    renderer = SlowRenderer(SECONDS_PER_FRAME)
    keep_unprepared_avatar(settings, "kept")
    async with serving(settings, renderer) as http:
        prepared_at_start = renderer.avatars_prepared
        first = await streaming_call(http, speech, frames=2)
        refused = LoopbackCall(http, speech)
        response = await refused.start(avatar="kept")
        health = (await http.get("/healthz")).json()
        metrics = (await http.get("/metrics")).text
        await refused.close()
        await first.close()

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_headroom"
    assert "2 sessions at 25 fps" in error["message"] and "1 lane" in error["message"]
    assert int(response.headers["retry-after"]) > 0
    assert renderer.avatars_prepared == prepared_at_start, "a refused offer never prepares its avatar"
    assert health["capacity"] == 1
    assert 'echolive_admission_refusals_total{reason="no_headroom"} 1.0' in metrics
    assert "echolive_render_utilisation " in metrics and "echolive_sessions_degraded 0.0" in metrics


async def test_a_bot_without_headroom_gets_an_error_event_with_retry_after_and_close_4503(tmp_path: Path) -> None:
    renderer = SlowRenderer(SECONDS_PER_FRAME)
    settings = ServerSettings(avatar_dir=tmp_path / "avatars", ice_host_addresses=("127.0.0.1",))
    app = create_app(settings, renderer=renderer)
    with serve_in_thread(app) as url:
        async with connect_bot(ws_url(url), output="viewer"):
            async with raw_socket(url) as socket:
                await socket.send(json.dumps({"type": "start", "protocol": 1}))
                events = await raw_events(socket, None)
            capacity = app.state.capacity()
    (error,) = events
    assert isinstance(error, Error) and error.code == "no_headroom"
    assert error.retry_after is not None and error.retry_after > 0
    assert (socket.close_code, socket.close_reason) == (4503, "no_headroom")
    assert capacity == 1, "the capacity a scaler reads: one session of this renderer runs in real time"


async def test_a_slot_whose_avatar_cannot_be_prepared_is_given_back(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    settings = replace(settings, max_sessions=1)
    settings.avatar_dir.mkdir(parents=True, exist_ok=True)
    (settings.avatar_dir / "blank.png").write_bytes(b"not an image")
    async with serving(settings) as http:
        broken = LoopbackCall(http, speech)
        failed = await broken.start(avatar="blank")
        await broken.close()
        call = LoopbackCall(http, speech)
        admitted = await call.start()
        await call.close()
    assert failed.status_code >= 400 and failed.status_code != 503, failed.text
    assert admitted.status_code == 201, "the failed offer's slot was given back"
