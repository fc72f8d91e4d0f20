"""Access control: the token on every route but the public ones (listed from the app's routes, so a new route
cannot be forgotten), viewer tokens scoped to one session and dated on a virtual clock, the own-peer hang-up
secret, the WebSocket refusal code, the refusal to listen beyond loopback without a token, and CORS."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx2
import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from server.access_control import AccessPolicy
from server.access_settings import AccessSettings
from server.app import create_app
from server.bot_protocol import PROTOCOL_VERSION, CloseCode, Error, Start, Started, parse_event, start_message
from server.cli import main
from server.settings import ServerSettings
from streaming.clock import VirtualClock
from tests.server.fake_renderer import LoudnessRenderer
from tests.server.loopback_call import LoopbackCall

TOKEN = "correct-horse-battery-staple"
PUBLIC_ROUTES = {("GET", "/"), ("GET", "/watch/{session_id}"), ("GET", "/healthz")}
"""What anyone may fetch: the page, the watch page and the liveness check (and the static files, a mount)."""
LIFETIME = 600.0


def guarded(settings: ServerSettings, **access: object) -> ServerSettings:
    return replace(settings, access=AccessSettings(token=TOKEN, viewer_link_lifetime=LIFETIME, **access))  # type: ignore[arg-type]


@asynccontextmanager
async def client(app: FastAPI, token: str | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of `app` presenting `token`; the app's lifespan is the caller's to run (several clients share it)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://echolive.test", headers=headers) as http:
        yield http


def http_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = []
    for route in app.routes:
        if isinstance(route, APIRoute) or type(route).__name__ == "Route":
            routes += [(method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"]  # type: ignore[attr-defined]
        else:
            assert isinstance(route, APIWebSocketRoute | Mount), f"a route of an unknown kind: {route!r}"
    return routes


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "some-id", path)


async def test_every_route_but_the_public_ones_needs_the_token(settings: ServerSettings) -> None:
    app = create_app(guarded(settings), renderer=LoudnessRenderer())
    routes = http_routes(app)
    assert PUBLIC_ROUTES < set(routes) and ("POST", "/api/sessions") in routes
    async with client(app) as anonymous, client(app, TOKEN) as holder, client(app, "wrong-" + TOKEN) as stranger:
        for method, path in routes:
            url = concrete(path)
            refused = await anonymous.request(method, url, json={})
            if (method, path) in PUBLIC_ROUTES:
                assert refused.status_code != 401, (method, path)
                continue
            assert refused.status_code == 401, (method, path)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"]["code"] == "token_required"
            assert (await stranger.request(method, url, json={})).status_code == 401, (method, path)
            assert (await holder.request(method, url, json={})).status_code != 401, (method, path)
        assert (await anonymous.get("/static/app.js")).status_code == 200
        assert (await anonymous.get("/api/nothing-here")).status_code == 401


async def test_without_a_token_everything_is_open(settings: ServerSettings) -> None:
    app = create_app(settings, renderer=LoudnessRenderer())
    async with client(app) as anonymous:
        for method, path in http_routes(app):
            assert (await anonymous.request(method, concrete(path), json={})).status_code != 401, (method, path)


async def test_a_viewer_token_opens_only_its_session_and_only_until_it_expires(settings: ServerSettings) -> None:
    clock = VirtualClock(start=1000.0)
    app = create_app(guarded(settings), renderer=LoudnessRenderer(), clock=clock)
    policy: AccessPolicy = app.state.access
    viewer_token = policy.viewer_token("watched")
    assert viewer_token is not None
    async with client(app, viewer_token) as viewer:
        # Past the door, the session does not exist: 404, not 401.
        assert (await viewer.post("/api/sessions/watched/viewers", json={"sdp": "x"})).status_code == 400
        assert (await viewer.delete("/api/sessions/watched/viewers/v1")).status_code == 404
        assert (await viewer.get("/api/config")).status_code == 200
        for method, url in [
            ("POST", "/api/sessions/other/viewers"),
            ("DELETE", "/api/sessions/watched"),
            ("GET", "/api/sessions"),
            ("GET", "/api/avatars"),
            ("POST", "/api/sessions"),
            ("GET", "/metrics"),
        ]:
            assert (await viewer.request(method, url, json={})).status_code == 401, (method, url)
        await clock.advance(LIFETIME + 1)
        expired = await viewer.post("/api/sessions/watched/viewers", json={"sdp": "x"})
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "viewer_link_expired"
    forged = viewer_token.replace("watched.", "other.")
    async with client(app, forged) as forger:
        assert (await forger.post("/api/sessions/other/viewers", json={"sdp": "x"})).status_code == 401


async def test_the_peer_hangs_up_its_own_session_with_its_secret_and_no_other(
    settings: ServerSettings, speech: npt.NDArray[np.float32]
) -> None:
    app = create_app(guarded(settings), renderer=LoudnessRenderer())
    async with app.router.lifespan_context(app), client(app, TOKEN) as holder:
        first, second = LoopbackCall(holder, speech), LoopbackCall(holder, speech)
        try:
            answers = [(await call.start()).json() for call in (first, second)]
            secrets = [answer["hang_up_secret"] for answer in answers]
            assert all(secrets) and secrets[0] != secrets[1] and TOKEN not in secrets
            assert all(answer["viewer_token"].startswith(answer["session_id"] + ".") for answer in answers)
            async with client(app, secrets[0]) as peer:
                assert (await peer.delete(f"/api/sessions/{second.session_id}")).status_code == 401
                assert (await peer.get("/api/sessions")).status_code == 401
                assert (await peer.delete(f"/api/sessions/{first.session_id}")).status_code == 204
            listed = (await holder.get("/api/sessions")).json()["sessions"]
            assert [session["session_id"] for session in listed] == [second.session_id]
        finally:
            await first.close()
            await second.close()


def start_text() -> str:
    return start_message(Start(PROTOCOL_VERSION, output="viewer"))


def test_the_bot_socket_refuses_a_missing_token_with_4401_and_takes_the_header_or_the_query(
    settings: ServerSettings,
) -> None:
    app = create_app(guarded(settings), renderer=LoudnessRenderer())
    with TestClient(app) as http:
        with http.websocket_connect("/api/ws") as socket:
            refusal = parse_event(socket.receive_text())
            assert isinstance(refusal, Error) and refusal.code == "token_required"
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_text()
        assert closed.value.code == CloseCode.UNAUTHORIZED == 4401 and closed.value.reason == "token_required"
        with http.websocket_connect("/api/ws?token=wrong-token-of-some-length") as socket:
            assert parse_event(socket.receive_text()) == Error(
                "token_invalid", "the access token is not valid for this request"
            )
        for path, headers in [(f"/api/ws?token={TOKEN}", {}), ("/api/ws", {"Authorization": f"Bearer {TOKEN}"})]:
            with http.websocket_connect(path, headers=headers) as socket:
                socket.send_text(start_text())
                started = parse_event(socket.receive_text())
                assert isinstance(started, Started)
                watch_token = started.viewer_url.split("#token=")[1]
                assert watch_token.startswith(f"{started.session_id}.")
                assert (
                    http.get(
                        f"/api/sessions/{started.session_id}/viewers/none",
                        headers={"Authorization": f"Bearer {watch_token}"},
                    ).status_code
                    != 401
                )


def test_no_listening_beyond_loopback_without_a_token_unless_insecure(
    settings: ServerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="--insecure"):
        replace(settings, host="0.0.0.0")
    replace(settings, host="0.0.0.0", access=AccessSettings(insecure=True))
    replace(settings, host="192.168.1.20", access=AccessSettings(token=TOKEN))
    replace(settings, host="::1")
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--token" in error and "--insecure" in error


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        AccessSettings(token="secret")


async def test_cors_is_closed_by_default_and_open_to_named_origins_only(settings: ServerSettings) -> None:
    origin = {"Origin": "https://app.example"}
    async with client(create_app(guarded(settings), renderer=LoudnessRenderer()), TOKEN) as closed:
        response = await closed.get("/api/avatars", headers=origin)
        assert response.status_code == 200
        assert not [name for name in response.headers if name.startswith("access-control-")]
    app = create_app(guarded(settings, cors_origins=("https://app.example",)), renderer=LoudnessRenderer())
    async with client(app, TOKEN) as opened, client(app) as anonymous:
        response = await opened.get("/api/avatars", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = await opened.get("/api/avatars", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = await anonymous.options(
            "/api/sessions",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert (
            preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://app.example"
        )
