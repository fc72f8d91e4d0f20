"""The server's door: with a token configured, every HTTP route and the bot WebSocket need a bearer credential,
except `/healthz` and the static page itself (`/`, `/static/*`, the `/watch/{id}` page).

Three credentials open it, each as `Authorization: Bearer ...` (or, on the WebSocket, where browsers cannot set
headers, a `token` query parameter):

- the server's token opens everything;
- a viewer token, handed out in a session's watch link, lets its holder watch that session (its viewer routes and
  `/api/config`) until it expires, and nothing else;
- a hang-up secret, in a session's answer, lets the peer that started the session end it.

Viewer tokens and hang-up secrets are HMACs under a key drawn when the process starts, so the server keeps no table
of them and a restart revokes them all. `install_access_control` puts this, and CORS for the named origins, on any
FastAPI app (the single server and the Ray Serve ingress alike).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from server.access_settings import AccessSettings
from server.bot_protocol import CloseCode, Error, event_message
from server.errors import error_response

_PUBLIC_PATH = re.compile(r"^/(healthz|static/.*|watch/[^/]+)?$")
_VIEWER_PATH = re.compile(r"^/api/sessions/(?P<session>[^/]+)/viewers(/[^/]+)?$")
_SESSION_PATH = re.compile(r"^/api/sessions/(?P<session>[^/]+)$")
_CONFIG_PATH = "/api/config"


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str


class TokenClock(Protocol):
    def now(self) -> float: ...


class CalendarClock:
    """Seconds since the epoch: a viewer token may be checked in another process than the one that signed it (a
    cluster's ingress honours what a worker signed, perhaps on another machine), and machines share the calendar."""

    def now(self) -> float:
        return time.time()


class AccessPolicy:
    """Decides whether a request may pass, and mints the scoped credentials a session hands out. `clock` dates
    viewer tokens (the calendar unless a test passes a virtual one); `key` signs them, drawn at random unless
    processes that must honour each other's tokens share one."""

    def __init__(self, settings: AccessSettings, clock: TokenClock | None = None, key: bytes | None = None) -> None:
        self.settings = settings
        self._clock = clock if clock is not None else CalendarClock()
        self._key = key if key is not None else secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def viewer_token(self, session_id: str) -> str | None:
        """A token that lets its holder watch `session_id` for the configured lifetime; None without access control."""
        if not self.enabled:
            return None
        expiry = int(self._clock.now() + self.settings.viewer_link_lifetime)
        return f"{session_id}.{expiry}.{self._sign('view', session_id, str(expiry))}"

    def hang_up_secret(self, session_id: str) -> str | None:
        """What the session's own peer presents to end it; None without access control."""
        return self._sign("hang-up", session_id) if self.enabled else None

    def check(self, method: str, path: str, credential: str | None) -> Refusal | None:
        """None when the request may pass; otherwise why not."""
        if self.settings.token is None or (method in ("GET", "HEAD") and _PUBLIC_PATH.match(path)):
            return None
        if credential is None:
            return Refusal(
                "token_required", "this server needs its access token: send it as 'Authorization: Bearer <token>'"
            )
        if hmac.compare_digest(credential.encode(), self.settings.token.encode()):
            return None
        hang_up = _SESSION_PATH.match(path)
        if method == "DELETE" and hang_up and self._is_hang_up_secret(credential, hang_up["session"]):
            return None
        viewer = _VIEWER_PATH.match(path)
        watched = self._watched_session(credential)
        if isinstance(watched, Refusal):
            return watched
        if watched is not None and (path == _CONFIG_PATH or (viewer is not None and viewer["session"] == watched)):
            return None
        return Refusal("token_invalid", "the access token is not valid for this request")

    def _watched_session(self, credential: str) -> str | Refusal | None:
        """The session a genuine viewer token is for; a refusal when it has expired; None when it is no viewer token."""
        parts = credential.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        session_id, expiry, signature = parts
        if not hmac.compare_digest(signature, self._sign("view", session_id, expiry)):
            return None
        if int(expiry) <= self._clock.now():
            return Refusal("viewer_link_expired", "this viewer link has expired; ask for a new one")
        return session_id

    def _is_hang_up_secret(self, credential: str, session_id: str) -> bool:
        return hmac.compare_digest(credential, self._sign("hang-up", session_id))

    def _sign(self, *fields: str) -> str:
        return hmac.new(self._key, "\n".join(fields).encode(), hashlib.sha256).hexdigest()


class AccessControl:
    """ASGI middleware enforcing an `AccessPolicy` on HTTP requests and WebSocket handshakes alike."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self._app = app
        self._policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        credential = _bearer(connection.headers.get("authorization"))
        if credential is None and scope["type"] == "websocket":
            credential = connection.query_params.get("token") or None
        method = scope["method"] if scope["type"] == "http" else "WEBSOCKET"
        refusal = self._policy.check(method, scope["path"], credential)
        if refusal is None:
            await self._app(scope, receive, send)
        elif scope["type"] == "http":
            response = error_response(401, refusal.code, refusal.message)
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
        else:
            # Accepted first so the client sees the close code and the reason; a refused handshake is a bare 403.
            socket = WebSocket(scope, receive, send)
            await socket.accept()
            await socket.send_text(event_message(Error(refusal.code, refusal.message)))
            await socket.close(CloseCode.UNAUTHORIZED, refusal.code)


def install_access_control(app: FastAPI, policy: AccessPolicy) -> None:
    """Guard `app` with `policy`, and answer cross-origin calls from the configured origins only (with none
    configured, no CORS header is ever sent and browsers keep other sites' pages out)."""
    app.add_middleware(AccessControl, policy=policy)
    if policy.settings.cors_origins:
        # Added last, so it runs first: a preflight carries no credentials and must be answered before the check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(policy.settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.state.access = policy


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None
