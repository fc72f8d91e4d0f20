"""`echolive serve`: build the app, then run it on uvicorn until Ctrl-C or SIGTERM.

Stopping closes every live session first, while their connections are still up, so a bot is told why (`closed`
with `server_shutdown`, close code 1001) before uvicorn cuts its socket; then uvicorn drains the rest for at most
`SHUTDOWN_GRACE` seconds. A stop by either signal that shut down cleanly exits with status 0.
"""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType

import uvicorn

from server.access_settings import is_loopback
from server.app import create_app
from server.session_registry import SessionRegistry
from server.settings import ServerSettings
from server.tls import server_certificate

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5
"""Seconds uvicorn waits for open connections and requests once the sessions are closed; then it cancels them."""


class _Stopped(Exception):
    """SIGTERM, re-raised by uvicorn once it has shut down (it does so to let the caller see the signal)."""


class _SessionClosingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, registry: SessionRegistry) -> None:
        super().__init__(config)
        self._registry = registry

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._registry.close_all("server_shutdown")
        await super().shutdown(sockets)


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def run_server(settings: ServerSettings) -> None:
    """Serve until stopped. A bad setting raises `ValueError` from `create_app`, before any port is bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    certificate = server_certificate(settings.tls)
    if certificate is not None:
        logger.info("https with %s; its SHA-256 fingerprint is %s", certificate.cert, certificate.fingerprint)
    if settings.access.enabled:
        logger.info("every API call and the bot WebSocket need the token")
    elif is_loopback(settings.host):
        logger.info("no token: listening on %s, for this machine only (give --token to serve others)", settings.host)
    else:
        logger.warning("no token and --insecure: anyone who reaches %s can use this server", settings.host)
    # The middleware closes an oversized message with a reason at `max_ws_message_bytes`; uvicorn's own limit, above
    # it, bounds what a frame can make the server buffer before the middleware sees the message.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        ws_max_size=2 * settings.max_ws_message_bytes,
        ssl_certfile=None if certificate is None else certificate.cert,
        ssl_keyfile=None if certificate is None else certificate.key,
    )
    registry: SessionRegistry = app.state.registry
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        _SessionClosingServer(config, registry).run()
    except (KeyboardInterrupt, _Stopped):
        logger.info("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
