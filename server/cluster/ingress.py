"""The ingress of the Ray deployment: the single server's HTTP surface, web client and WebSocket API, with no
renderer. Sessions are placed on worker replicas through Ray Serve (`WorkerPool.place`, `relay_bot`); everything
about a running session goes to the worker that holds it; lists, health and metrics gather every worker's.

`create_ingress_app` builds the FastAPI app from the settings alone, like `server.app.create_app`, so the same
access control and body limits are installed on both.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import aiohttp
from fastapi import FastAPI, File, Response, UploadFile, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from server.access_control import AccessPolicy, install_access_control
from server.app import AvatarList, install_request_limits
from server.avatars import AvatarInfo
from server.cluster.bot_relay import relay_bot
from server.cluster.deployment_metrics import IngressMetrics
from server.cluster.messages import PlacedSession
from server.cluster.worker_pool import DeploymentFull, WorkerPool, WorkerReply
from server.errors import error_response, install_error_handlers
from server.ice_servers import ClientConfig, client_config
from server.settings import ServerSettings
from server.signalling import SessionAnswer, SessionOffer, ViewerAnswer, ViewerOffer
from streaming.clock import MonotonicClock


@dataclass(frozen=True)
class DeploymentSessionList:
    sessions: list[PlacedSession]
    max_sessions: int
    """Sessions the workers running now hold at once, together."""


@dataclass(frozen=True)
class WorkerHealth:
    worker: str
    url: str
    sessions: int
    max_sessions: int


@dataclass(frozen=True)
class DeploymentHealth:
    status: str
    """ok while at least one worker answers; starting before any does."""
    renderer: str
    fps: float
    sessions: int
    max_sessions: int
    workers: list[WorkerHealth]


def create_ingress_app(settings: ServerSettings, pool: WorkerPool, access_key: bytes) -> FastAPI:
    """`pool` reaches the worker replicas; `access_key` is the one the workers sign viewer tokens and hang-up secrets
    with."""
    metrics = IngressMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await pool.aclose()

    app = FastAPI(
        title="EchoMimic Live (Ray Serve)",
        summary="Talk into a microphone; a portrait speaks with your voice over WebRTC, on a cluster of workers.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_request_limits(app, settings, MonotonicClock())

    @app.get("/", include_in_schema=False)
    async def web_client() -> FileResponse:
        return FileResponse(settings.web_client_dir / "index.html")

    @app.get("/watch/{session_id}", include_in_schema=False)
    async def watch_page(session_id: str) -> FileResponse:
        return FileResponse(settings.web_client_dir / "watch.html")

    @app.post(
        "/api/sessions",
        status_code=201,
        summary="Start a session on a worker with room, from an SDP offer; returns the SDP answer",
        response_model=SessionAnswer,
    )
    async def create_session(offer: SessionOffer) -> SessionAnswer | Response:
        try:
            return await pool.place(offer)
        except DeploymentFull as full:
            metrics.sessions_refused.inc()
            return _full(full)

    @app.get("/api/sessions", summary="The sessions streaming now, on every worker")
    async def list_sessions() -> DeploymentSessionList:
        sessions: list[PlacedSession] = []
        capacity = 0
        for worker, reply in await pool.ask_each("GET", "/api/sessions"):
            listed = json.loads(reply.body)
            capacity += listed["max_sessions"]
            sessions.extend(PlacedSession(**summary, worker=worker.worker_id) for summary in listed["sessions"])
        return DeploymentSessionList(sessions, capacity)

    @app.delete("/api/sessions/{session_id}", status_code=204, summary="Hang up a session, wherever it runs")
    async def delete_session(session_id: str) -> Response:
        return _passed_on(await pool.ask_holder("DELETE", f"/api/sessions/{session_id}"))

    @app.post(
        "/api/sessions/{session_id}/viewers",
        status_code=201,
        summary="Watch a session: a receive-only SDP offer in, the answer (from its worker) out",
        response_model=ViewerAnswer,
    )
    async def add_viewer(session_id: str, offer: ViewerOffer) -> Response:
        body = {"sdp": offer.sdp, "type": offer.type}
        return _passed_on(await pool.ask_holder("POST", f"/api/sessions/{session_id}/viewers", json=body))

    @app.delete("/api/sessions/{session_id}/viewers/{viewer_id}", status_code=204, summary="Stop watching")
    async def remove_viewer(session_id: str, viewer_id: str) -> Response:
        return _passed_on(await pool.ask_holder("DELETE", f"/api/sessions/{session_id}/viewers/{viewer_id}"))

    @app.websocket("/api/ws")
    async def bot_socket(socket: WebSocket) -> None:
        """The bot API, protocol 1 (see the README), relayed to the worker that holds the session."""
        await relay_bot(socket, pool)

    @app.get("/api/avatars", summary="The avatars a session can use", response_model=AvatarList)
    async def list_avatars() -> Response:
        return _passed_on(await pool.ask_any("GET", "/api/avatars"))

    @app.post(
        "/api/avatars",
        status_code=201,
        summary="Upload a portrait (PNG or JPEG with one clear face); every worker reads the same avatar folder",
        response_model=AvatarInfo,
    )
    async def upload_avatar(image: Annotated[UploadFile, File(description="PNG or JPEG portrait")]) -> Response:
        form = aiohttp.FormData()
        form.add_field(
            "image",
            await image.read(settings.max_upload_bytes + 1),
            filename=image.filename or "avatar",
            content_type=image.content_type or "application/octet-stream",
        )
        return _passed_on(await pool.ask_any("POST", "/api/avatars", data=form))

    @app.get("/api/avatars/{name}/image", summary="An avatar's portrait", response_class=Response)
    async def avatar_image(name: str) -> Response:
        return _passed_on(await pool.ask_any("GET", f"/api/avatars/{name}/image"))

    @app.get("/api/config", summary="What a page needs to call: the ICE servers and how long to gather")
    async def page_config() -> ClientConfig:
        return client_config(settings.ice_servers)

    @app.get("/healthz", summary="Liveness and load of the whole deployment")
    async def health() -> DeploymentHealth:
        answers = await pool.ask_each("GET", "/healthz")
        found = [(worker, json.loads(reply.body)) for worker, reply in answers if reply.status == 200]
        every = [WorkerHealth(w.worker_id, w.url, h["sessions"], h["max_sessions"]) for w, h in found]
        renderer = str(found[0][1]["renderer"]) if found else settings.renderer
        fps = float(found[0][1]["fps"]) if found else settings.fps or 0.0
        return DeploymentHealth(
            "ok" if found else "starting",
            renderer,
            fps,
            sum(worker.sessions for worker in every),
            sum(worker.max_sessions for worker in every),
            every,
        )

    @app.get(
        "/metrics", summary="Prometheus metrics of every worker (labelled) and the ingress", response_class=Response
    )
    async def prometheus_metrics() -> Response:
        answers = await pool.ask_each("GET", "/metrics")
        texts = {worker.worker_id: reply.body.decode() for worker, reply in answers if reply.status == 200}
        return Response(metrics.exposition(texts), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=settings.web_client_dir), name="static")
    install_access_control(app, AccessPolicy(settings.access, key=access_key))  # last, so it runs first
    return app


def _full(full: DeploymentFull) -> Response:
    return error_response(503, "server_full", "every worker is full; try again in a minute", full.retry_after)


def _passed_on(reply: WorkerReply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type or None)
