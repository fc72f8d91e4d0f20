"""Ties a bot's slot on a worker to its connection: the ingress's relay connects with the lease's id in a header,
and the lease (the streaming request Ray Serve counts) ends when that connection ends, whatever ended it, the
ingress included. A lease whose connection never comes is given up after `CONNECT_TIMEOUT`."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

LEASE_HEADER = "x-echolive-lease"
CONNECT_TIMEOUT = 15.0


class LeaseWatch:
    """ASGI middleware in front of a worker's own API."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._connected: dict[str, asyncio.Event] = {}
        self._ended: dict[str, asyncio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lease = dict(scope["headers"]).get(LEASE_HEADER.encode()) if scope["type"] == "websocket" else None
        if lease is None:
            await self._app(scope, receive, send)
            return
        lease_id = lease.decode("latin-1")
        self._events(lease_id)[0].set()
        try:
            await self._app(scope, receive, send)
        finally:
            self._events(lease_id)[1].set()

    async def held(self, lease_id: str) -> None:
        """Return once the lease's connection has come and gone (or never came)."""
        connected, ended = self._events(lease_id)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await connected.wait()
            await ended.wait()
        except TimeoutError:
            pass
        finally:
            self._connected.pop(lease_id, None)
            self._ended.pop(lease_id, None)

    def _events(self, lease_id: str) -> tuple[asyncio.Event, asyncio.Event]:
        return self._connected.setdefault(lease_id, asyncio.Event()), self._ended.setdefault(lease_id, asyncio.Event())
