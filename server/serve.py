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
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
