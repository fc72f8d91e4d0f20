"""The HTTP surface: web client and watch page, signalling and viewers, the bot WebSocket, avatars, health and
metrics. Each route is a thin shim over one object built here; OpenAPI docs are at `/docs`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, File, Response, UploadFile, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from server.access_control import install_access_control
from server.avatars import AvatarInfo
from server.client_rate_limit import ClientRateLimit, TokenBuckets
from server.errors import install_error_handlers
from server.ice_servers import ClientConfig, client_config
from server.request_limits import RequestSizeLimits
from server.session_core import SessionSummary
from server.session_services import SessionServices, build_session_services
from server.settings import ServerSettings
from server.signalling import MAX_SDP_LENGTH, SessionAnswer, SessionOffer, ViewerAnswer, ViewerOffer
from streaming.clock import Clock
from streaming.renderer import Renderer

UPLOAD_OVERHEAD = 64 * 1024
"""Bytes a multipart upload may carry beyond the image itself (boundaries, headers, the file name)."""
OFFER_OVERHEAD = 4 * 1024
"""Bytes a session offer may carry beyond its SDP (the JSON around it, the avatar name)."""


@dataclass(frozen=True)
class AvatarList:
    avatars: list[AvatarInfo]
    default: str


@dataclass(frozen=True)
class SessionList:
    sessions: list[SessionSummary]
    max_sessions: int


@dataclass(frozen=True)
class Health:
    status: str
    renderer: str
    fps: float
    sessions: int
    max_sessions: int
    capacity: int
    """Sessions this renderer runs at once in real time, from the render times measured now (`--max-sessions` at
    most)."""


def create_app(
    settings: ServerSettings, *, renderer: Renderer[Any] | None = None, clock: Clock | None = None
) -> FastAPI:
    """Build the server. Everything that can fail on bad settings (renderer, weights, the startup avatar and its
    face) fails here with a `ValueError`, before a port is bound. `renderer` and `clock` replace the built-in ones
    (tests pass fakes)."""
    return create_app_for(settings, build_session_services(settings, renderer=renderer, clock=clock))


def create_app_for(settings: ServerSettings, services: SessionServices) -> FastAPI:
    """The HTTP surface over session machinery already built (a cluster worker builds its own, see
    `server.cluster.worker`)."""
    metrics, avatars, registry = services.metrics, services.avatars, services.registry
    signalling, bots = services.signalling, services.bots

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await registry.close_all("server_shutdown")

    app = FastAPI(
        title="EchoMimic Live",
        summary="Talk into a microphone; a portrait speaks with your voice over WebRTC.",
        lifespan=lifespan,
    )
    app.state.registry = registry  # `echolive serve` closes the sessions before uvicorn cuts their connections
    install_error_handlers(app)
    app.state.capacity = registry.capacity  # sessions that fit now, for a scaler (Ray Serve's max_ongoing_requests)

    install_request_limits(app, settings, services.clock)

    @app.get("/", include_in_schema=False)
    async def web_client() -> FileResponse:
        return FileResponse(settings.web_client_dir / "index.html")

    @app.get("/watch/{session_id}", include_in_schema=False)
    async def watch_page(session_id: str) -> FileResponse:
        return FileResponse(settings.web_client_dir / "watch.html")

    @app.post("/api/sessions", status_code=201, summary="Start a session from an SDP offer; returns the SDP answer")
    async def create_session(offer: SessionOffer) -> SessionAnswer:
        return await signalling.answer(offer)

    @app.get("/api/sessions", summary="The sessions streaming now")
    async def list_sessions() -> SessionList:
        return SessionList([session.summary() for session in registry.sessions()], registry.max_sessions)

    @app.delete("/api/sessions/{session_id}", status_code=204, summary="Hang up a session")
    async def delete_session(session_id: str) -> Response:
        await signalling.hang_up(session_id)
        return Response(status_code=204)

    @app.post(
        "/api/sessions/{session_id}/viewers",
        status_code=201,
        summary="Watch a session: a receive-only SDP offer in, the answer out",
    )
    async def add_viewer(session_id: str, offer: ViewerOffer) -> ViewerAnswer:
        return await signalling.add_viewer(session_id, offer)

    @app.delete("/api/sessions/{session_id}/viewers/{viewer_id}", status_code=204, summary="Stop watching")
    async def remove_viewer(session_id: str, viewer_id: str) -> Response:
        await signalling.remove_viewer(session_id, viewer_id)
        return Response(status_code=204)

    @app.websocket("/api/ws")
    async def bot_socket(socket: WebSocket) -> None:
        """The bot API, protocol 1 (see the README): PCM in; frames and voice, or a viewer link, out."""
        await bots.serve(socket)

    @app.get("/api/avatars", summary="The avatars a session can use")
    async def list_avatars() -> AvatarList:
        return AvatarList(avatars.list(), avatars.default_name)

    @app.post("/api/avatars", status_code=201, summary="Upload a portrait (PNG or JPEG with one clear face)")
    async def upload_avatar(image: Annotated[UploadFile, File(description="PNG or JPEG portrait")]) -> AvatarInfo:
        return await avatars.upload(await image.read(settings.max_upload_bytes + 1), image.filename)

    @app.get("/api/avatars/{name}/image", summary="An avatar's portrait", response_class=FileResponse)
    async def avatar_image(name: str) -> FileResponse:
        return FileResponse(avatars.image_path(name), media_type=avatars.media_type(name))

    @app.get("/api/config", summary="What a page needs to call: the ICE servers and how long to gather")
    async def page_config() -> ClientConfig:
        return client_config(settings.ice_servers)

    @app.get("/healthz", summary="Liveness and load")
    async def health() -> Health:
        return Health(
            "ok",
            services.renderer_name,
            services.frame_rate,
            len(registry),
            registry.max_sessions,
            registry.capacity(),
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=settings.web_client_dir), name="static")
    install_access_control(
        app, services.access
    )  # last, so it runs first: nothing is read or done for a refused request
    return app


def install_request_limits(app: FastAPI, settings: ServerSettings, clock: Clock) -> None:
    """Uploads rate-limited per client address, and every body and WebSocket message bounded while it is read;
    the single server and the cluster's ingress install the same."""
    app.add_middleware(
        ClientRateLimit,
        method="POST",
        path="/api/avatars",
        buckets=TokenBuckets(settings.upload_rate, clock),
        what="uploads",
    )
    app.add_middleware(
        RequestSizeLimits,
        body_limits={
            "/api/avatars": settings.max_upload_bytes + UPLOAD_OVERHEAD,
            "/api/sessions": MAX_SDP_LENGTH + OFFER_OVERHEAD,
            "/api/sessions/{session_id}/viewers": MAX_SDP_LENGTH + OFFER_OVERHEAD,
        },
        max_message_bytes=settings.max_ws_message_bytes,
    )
