"""`echolive serve`: build the app, then run it on uvicorn until interrupted."""

from __future__ import annotations

import logging

import uvicorn

from server.app import create_app
from server.settings import ServerSettings


def run_server(settings: ServerSettings) -> None:
    """Serve until Ctrl-C. A bad setting raises `ValueError` from `create_app`, before any port is bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # The middleware closes an oversized message with a reason at `max_ws_message_bytes`; uvicorn's own limit, above
    # it, bounds what a frame can make the server buffer before the middleware sees the message.
    ws_max_size = 2 * settings.max_ws_message_bytes
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", ws_max_size=ws_max_size)
