"""The HTTP surface without a call: the web client's files, OpenAPI docs, health and metrics."""

from __future__ import annotations

from dataclasses import replace

from server.settings import ServerSettings
from tests.server.conftest import serving


async def test_the_web_client_is_served_from_the_root(settings: ServerSettings) -> None:
    async with serving(settings) as http:
        page = await http.get("/")
        script = await http.get("/static/app.js")
        style = await http.get("/static/style.css")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="/static/app.js"' in page.text and "avatar-video" in page.text
    assert script.status_code == 200 and "RTCPeerConnection" in script.text
    assert style.status_code == 200


async def test_openapi_documents_every_route(settings: ServerSettings) -> None:
    async with serving(settings) as http:
        docs = await http.get("/docs")
        schema = (await http.get("/openapi.json")).json()
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert set(schema["paths"]) == {
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/viewers",
        "/api/sessions/{session_id}/viewers/{viewer_id}",
        "/api/avatars",
        "/api/avatars/{name}/image",
        "/api/config",
        "/healthz",
        "/metrics",
    }
    assert set(schema["paths"]["/api/sessions"]) == {"get", "post"}


async def test_health_and_metrics_before_any_session(settings: ServerSettings) -> None:
    async with serving(replace(settings, max_sessions=3, fps=20.0)) as http:
        health = (await http.get("/healthz")).json()
        metrics = await http.get("/metrics")
    assert health == {"status": "ok", "renderer": "fake", "fps": 20.0, "sessions": 0, "max_sessions": 3, "capacity": 3}
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("echolive_sessions_active 0.0", "echolive_frames_sent_total 0.0", "echolive_frames_dropped_total 0.0"):
        assert name in metrics.text
