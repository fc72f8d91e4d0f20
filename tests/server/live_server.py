"""The app on a real uvicorn server in a background thread, on a free port of 127.0.0.1, for browsers and bots."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from server.tls import Certificate

STARTUP_WAIT = 15.0


@contextmanager
def serve_in_thread(
    app: FastAPI, send_buffer: int | None = None, certificate: Certificate | None = None
) -> Iterator[str]:
    """Yield the server's base URL; on exit, shut it down (closing every session) and join its thread.
    `send_buffer`: the kernel's send buffer for each connection, in bytes (small: a slow reader pushes back soon).
    `certificate`: serve https with it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        # Accepted connections inherit the listener's buffer sizes.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ssl_certfile=None if certificate is None else certificate.cert,
        ssl_keyfile=None if certificate is None else certificate.key,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_WAIT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"{'http' if certificate is None else 'https'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
