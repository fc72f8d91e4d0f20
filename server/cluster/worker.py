"""`SessionWorker`: one worker replica of the Ray Serve deployment. It owns a renderer, an avatar store and its
sessions (the single server's `SessionServices`), and serves sessions the ingress places on it.

A session is one long-lived streaming request: `webrtc` yields the SDP answer as its first item and stays open
until the session ends, so Ray Serve counts each live session as one ongoing request of this replica, and
`max_ongoing_requests` (the worker's capacity) makes its router place sessions only where there is room. WebRTC
media goes straight between this replica and the client: the answer carries this host's ICE candidates.

Besides, each replica serves the single server's own HTTP API on a port of its node (`create_app_for` over the
same services), announced to the `WorkerDirectory`. The ingress reaches a given worker there: to relay a bot's
WebSocket for the whole of its session (see `server.cluster.bot_relay`), and to list, end and watch sessions.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import ray
import uvicorn
from ray import serve
from ray.serve.handle import DeploymentHandle

from server.app import create_app_for
from server.cluster.directory import ANNOUNCE_INTERVAL
from server.cluster.lease_watch import LeaseWatch
from server.cluster.messages import BotLease, Placed, Refused, SessionEnded, WorkerAddress
from server.errors import ApiError
from server.session_services import build_session_services
from server.settings import ServerSettings
from server.signalling import SessionOffer

logger = logging.getLogger(__name__)

BACKLOG = 128
UNLIMITED_UPLOADS = 1e9
"""Uploads a minute the worker's own API takes from the ingress."""


class SessionWorker:
    def __init__(self, settings: ServerSettings, directory: DeploymentHandle[Any], access_key: bytes) -> None:
        """Ray Serve runs the constructor on the replica's event loop: the worker's API starts serving here.
        `access_key` signs viewer tokens and hang-up secrets so that the ingress honours them."""
        # Uploads reach a worker only through the ingress, which limits them per client; here they would all come
        # from the ingress's one address.
        settings = replace(settings, upload_rate=UNLIMITED_UPLOADS)
        self._services = build_session_services(settings, access_key=access_key)
        self._directory = directory
        self.worker_id = serve.get_replica_context().replica_id.unique_id
        host = ray.util.get_node_ip_address()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(BACKLOG)  # connections wait here until the server below takes them
        self.address = WorkerAddress(self.worker_id, f"http://{host}:{listener.getsockname()[1]}")
        self._leases = LeaseWatch(create_app_for(settings, self._services))
        self._server = uvicorn.Server(uvicorn.Config(self._leases, log_level="warning", lifespan="on"))
        self._api = asyncio.create_task(self._server.serve(sockets=[listener]), name="worker-api")
        self._announcer = asyncio.create_task(self._announce(), name="worker-announce")

    async def _announce(self) -> None:
        while True:
            try:
                await self._directory.announce.remote(self.address)
            except Exception as error:  # the directory is restarting; the next beat tells the new one
                logger.info("worker %s: could not announce itself (%r)", self.worker_id, error)
            await asyncio.sleep(ANNOUNCE_INTERVAL)

    async def check_health(self) -> None:
        """Ray Serve replaces a replica whose check fails; this one fails when its own API has stopped."""
        if self._api.done():
            raise RuntimeError("the worker's API has stopped")

    async def webrtc(self, offer: SessionOffer) -> AsyncIterator[Placed | Refused | SessionEnded]:
        """Answer an offer and hold the request open for the session's life: `Placed` (or `Refused`), then
        `SessionEnded`."""
        try:
            answer = await self._services.signalling.answer(offer)
        except ApiError as error:
            yield Refused(error.status, error.code, error.message)
            return
        yield Placed(self.worker_id, answer)
        try:
            session = self._services.registry.get(answer.session_id)
        except ApiError:
            yield SessionEnded("ended_at_once")
            return
        await session.wait_closed()
        yield SessionEnded(session.end_reason or "closed")

    async def bot(self) -> AsyncIterator[BotLease]:
        """A slot for a bot's session, held while the relay's connection to this worker lasts."""
        lease_id = uuid.uuid4().hex
        yield BotLease(self.worker_id, self.address.url.replace("http://", "ws://", 1) + "/api/ws", lease_id)
        await self._leases.held(lease_id)

    async def __del__(self) -> None:
        self._announcer.cancel()
        self._server.should_exit = True
        await asyncio.gather(self._api, self._announcer, return_exceptions=True)
        await self._directory.forget.remote(self.worker_id)
