"""`echolive serve`: build the app, then run it on uvicorn until interrupted."""

from __future__ import annotations

import logging

import uvicorn

from server.access_settings import is_loopback
from server.app import create_app
from server.settings import ServerSettings
from server.tls import server_certificate

logger = logging.getLogger(__name__)


def run_server(settings: ServerSettings) -> None:
    """Serve until Ctrl-C. A bad setting raises `ValueError` from `create_app`, before any port is bound."""
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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        ssl_certfile=None if certificate is None else certificate.cert,
        ssl_keyfile=None if certificate is None else certificate.key,
    )
