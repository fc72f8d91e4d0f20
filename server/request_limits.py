"""How much a client may send: an ASGI middleware that bounds HTTP request bodies per route and WebSocket messages.

Bodies are counted as they arrive, so a chunked body (which declares no length) is held to the same limit as one
with a `Content-Length`. A declared length over the limit is refused before a byte of the body is read; a body
that passes the limit while streaming is cut there: the application never receives more than the limit, it sees
the client disconnect, and the client gets a 413 in the server's JSON error shape at once. WebSocket messages
over their limit close the connection with 1009 (message too big).

Any ASGI application can install it (`app.add_middleware(RequestSizeLimits, ...)`), so every ingress in front of
the sessions holds the same limits.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response

DEFAULT_BODY_LIMIT = 64 * 1024
"""Bytes a request body may carry on a route the limits do not name: enough for any JSON control request."""
MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024
"""Bytes one WebSocket message may carry: 87 s of 24 kHz PCM16, far more than a text-to-speech chunk."""
MESSAGE_TOO_BIG = 1009
"""The WebSocket close code for a message larger than the receiver accepts (RFC 6455)."""
MESSAGE_TOO_BIG_REASON = "message_too_large"


class RequestSizeLimits:
    """Bounds request bodies by route and WebSocket messages. `body_limits` maps route paths to bytes; a path
    segment written `{name}` matches any one segment (`/api/sessions/{session_id}/viewers`). Other routes get
    `default_body_limit`."""

    def __init__(
        self,
        app: ASGIApp,
        body_limits: Mapping[str, int],
        default_body_limit: int = DEFAULT_BODY_LIMIT,
        max_message_bytes: int = MAX_WS_MESSAGE_BYTES,
    ) -> None:
        self.app = app
        self._routes = [(_segments(path), limit) for path, limit in body_limits.items()]
        self._default_body_limit = default_body_limit
        self._max_message_bytes = max_message_bytes

    def body_limit(self, path: str) -> int:
        segments = _segments(path)
        for route, limit in self._routes:
            if len(route) == len(segments) and all(
                part == actual or (part.startswith("{") and part.endswith("}"))
                for part, actual in zip(route, segments, strict=True)
            ):
                return limit
        return self._default_body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._serve_http(scope, receive, send)
        elif scope["type"] == "websocket":
            socket = _LimitedMessages(self._max_message_bytes, receive, send)
            await self.app(scope, socket.receive, socket.send)
        else:
            await self.app(scope, receive, send)

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.body_limit(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            message = f"the request body is {_readable(declared)}; the limit here is {_readable(limit)}"
            await error_response(413, "upload_too_large", message)(scope, receive, send)
            return
        body = _LimitedBody(limit, scope, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            # Once the client has its 413, whatever the cut-off body made the application raise is spent.
            if not body.refused:
                raise


class _LimitedBody:
    """One HTTP exchange whose body is counted on the way in."""

    def __init__(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        self._limit = limit
        self._scope = scope
        self._receive = receive
        self._send = send
        self._received = 0
        self._response_started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                await self._refuse()
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)

    async def _refuse(self) -> None:
        self.refused = True
        if not self._response_started:
            message = f"the request body passed the limit here of {_readable(self._limit)}"
            await error_response(413, "upload_too_large", message)(self._scope, self._receive, self._send)


class _LimitedMessages:
    """One WebSocket connection whose incoming messages are measured."""

    def __init__(self, limit: int, receive: Receive, send: Send) -> None:
        self._limit = limit
        self._receive = receive
        self._send = send
        self._closed = False

    async def receive(self) -> Message:
        if self._closed:
            return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
        message = await self._receive()
        if message["type"] == "websocket.receive" and _message_size(message) > self._limit:
            self._closed = True
            await self._send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": MESSAGE_TOO_BIG_REASON})
            return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
        return message

    async def send(self, message: Message) -> None:
        if not self._closed:
            await self._send(message)


def _segments(path: str) -> list[str]:
    return path.rstrip("/").split("/")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _message_size(message: Message) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    return len(text.encode()) if text is not None else 0


def _readable(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
