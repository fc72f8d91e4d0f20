"""`WS /api/ws`: the handshake of the bot protocol, up to a running `BotSession`.

The gateway accepts the connection, waits up to `START_TIMEOUT` for a valid `start` (anything else before it is
answered with an `error` event and the wait goes on), finds the avatar, and admits the session into the same pool
as WebRTC sessions. A start the server cannot honour (wrong protocol version, bad fields, unknown avatar, a full
server) gets an `error` event and a close with a 4xxx code whose reason is the error code.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.access_control import AccessPolicy
from server.avatars import AvatarStore
from server.bot_protocol import (
    Close,
    CloseCode,
    Error,
    ProtocolError,
    Start,
    event_message,
    parse_control,
)
from server.bot_session import MAX_ERRORS, BotSession
from server.errors import ApiError
from server.metrics import ServerMetrics
from server.session_registry import SessionRegistry

logger = logging.getLogger(__name__)

START_TIMEOUT = 10.0
"""Seconds a new connection has to send its `start`."""

BotSessionFactory = Callable[[str, str, object, WebSocket, Start, str], BotSession]
"""(session id, avatar name, prepared avatar, socket, start, viewer url) -> a session not yet started."""

_ADMISSION_CLOSE_CODES = {404: CloseCode.UNKNOWN_AVATAR, 503: CloseCode.SERVER_FULL}


class BotGateway:
    def __init__(
        self,
        registry: SessionRegistry,
        avatars: AvatarStore[object],
        new_session: BotSessionFactory,
        metrics: ServerMetrics,
        access: AccessPolicy,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self._access = access
        self._registry = registry
        self._avatars = avatars
        self._new_session = new_session
        self._metrics = metrics
        self._start_timeout = start_timeout

    async def serve(self, socket: WebSocket) -> None:
        """Run one connection to its end."""
        await socket.accept()
        try:
            start = await self._wait_for_start(socket)
            if start is None:
                return
            session = await self._admit(socket, start)
            if session is None:
                return
        except WebSocketDisconnect:
            return
        await session.start()
        logger.info("bot session %s started (%s, %d Hz)", session.session_id, start.output, start.sample_rate)
        await session.wait_closed()

    async def _wait_for_start(self, socket: WebSocket) -> Start | None:
        """The client's start; None when the connection was closed instead."""
        refusals = 0
        try:
            async with asyncio.timeout(self._start_timeout):
                while True:
                    message = await socket.receive()
                    if message["type"] == "websocket.disconnect":
                        return None
                    try:
                        if message.get("bytes") is not None:
                            raise ProtocolError("not_started", "send a start message before any audio")
                        control = parse_control(message.get("text") or "")
                        if isinstance(control, Start):
                            return control
                        if isinstance(control, Close):
                            await socket.close(CloseCode.NORMAL, "client_closed")
                            return None
                        raise ProtocolError("not_started", "send a start message first")
                    except ProtocolError as error:
                        refusals += 1
                        if error.close_code is not None:
                            await self._refuse(socket, error.code, error.message, error.close_code)
                            return None
                        if refusals >= MAX_ERRORS:
                            await self._refuse(socket, "too_many_errors", error.message, CloseCode.POLICY_VIOLATION)
                            return None
                        await self._tell(socket, error.code, error.message)
        except TimeoutError:
            late = f"no start message within {self._start_timeout:.0f} s"
            await self._refuse(socket, "start_timeout", late, CloseCode.START_TIMEOUT)
            return None

    async def _admit(self, socket: WebSocket, start: Start) -> BotSession | None:
        avatar_name = start.avatar or self._avatars.default_name
        session_id = uuid.uuid4().hex
        try:
            # Admission before the avatar is prepared; the slot is given back if anything after it fails.
            with self._registry.reserve() as ticket:
                avatar = await self._avatars.prepared(avatar_name)
                viewer_url = self._viewer_url(socket, session_id)
                session = self._new_session(session_id, avatar_name, avatar, socket, start, viewer_url)
                self._registry.admit(session, ticket)
        except ApiError as error:
            close_code = _ADMISSION_CLOSE_CODES.get(error.status, CloseCode.INVALID_START)
            await self._refuse(socket, error.code, error.message, close_code, error.retry_after)
            return None
        return session

    async def _tell(self, socket: WebSocket, code: str, message: str, retry_after: int | None = None) -> None:
        self._metrics.protocol_errors.labels(code=code).inc()
        await socket.send_text(event_message(Error(code, message, retry_after)))

    async def _refuse(
        self, socket: WebSocket, code: str, message: str, close_code: CloseCode, retry_after: int | None = None
    ) -> None:
        await self._tell(socket, code, message, retry_after)
        await socket.close(close_code, code)

    def _viewer_url(self, socket: WebSocket, session_id: str) -> str:
        return viewer_url(socket, session_id, self._access.viewer_token(session_id))


def viewer_url(socket: WebSocket, session_id: str, token: str | None) -> str:
    """The watch page of a session, on the host and scheme the bot reached the server by; with access control on,
    its viewer token rides in the fragment, which browsers send to no server and no Referer carries."""
    scheme = "https" if socket.url.scheme == "wss" else "http"
    fragment = "" if token is None else f"token={token}"
    return str(socket.url.replace(scheme=scheme, path=f"/watch/{session_id}", query="", fragment=fragment))
