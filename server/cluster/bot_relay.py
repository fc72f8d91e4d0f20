"""`WS /api/ws` on the ingress: a bot's WebSocket relayed to one worker replica for the whole of its session.

Why a relay to the worker's own bot endpoint: the bot's audio must reach the replica that renders it, for every
message of the session. Ray Serve routes each request on its own, and model multiplexing only prefers (it falls
back to another replica when the preferred one is at `max_ongoing_requests`, which a busy worker always is); a
per-session Ray queue costs an actor process per session. So the session's slot is taken through Ray Serve (a
`BotLease`, one streaming request held open while the relay's connection to the worker lasts, counted like a
WebRTC session), and the lease names the
worker's own WebSocket address, to which every message then goes directly, in order, both ways. The worker runs
the single server's bot gateway unchanged: the protocol, its errors and close codes are the same.

The relay changes one thing: the `started` event's viewer link points at the ingress, which serves the watch page.
A worker that vanishes mid-session ends the bot's connection with an `error` event (`worker_lost`) and 1011.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.bot_gateway import viewer_url
from server.bot_protocol import CloseCode, Error, Started, event_message, parse_event
from server.cluster.lease_watch import LEASE_HEADER
from server.cluster.worker_pool import DeploymentFull, WorkerPool

logger = logging.getLogger(__name__)


async def relay_bot(client: WebSocket, pool: WorkerPool) -> None:
    """Run one bot connection to its end."""
    await client.accept()
    try:
        async with (
            pool.bot_lease() as lease,
            connect(
                lease.socket_url,
                additional_headers={LEASE_HEADER: lease.lease_id, **pool.worker_headers},
                compression=None,
                proxy=None,
                max_size=None,
            ) as worker,
        ):
            await _relay(client, worker)
    except DeploymentFull:
        await _refuse(client, "server_full", "every worker is full; try again in a minute", CloseCode.SERVER_FULL)
    except OSError as error:
        logger.warning("could not reach a worker's bot endpoint (%r)", error)
        await _refuse(
            client, "worker_lost", "the worker for this session could not be reached", CloseCode.INTERNAL_ERROR
        )


async def _relay(client: WebSocket, worker: ClientConnection) -> None:
    inbound = asyncio.create_task(_client_to_worker(client, worker), name="bot-relay-in")
    try:
        async for message in worker:
            if isinstance(message, bytes):
                await client.send_bytes(message)
            else:
                await client.send_text(_with_public_viewer_url(client, message))
    except ConnectionClosed as closed:
        if closed.rcvd is None:  # no close frame: the worker went away without a word
            await _refuse(client, "worker_lost", "the worker rendering this session stopped", CloseCode.INTERNAL_ERROR)
            return
    except (WebSocketDisconnect, RuntimeError):
        return  # the bot left; closing the worker's side below ends the session there
    finally:
        inbound.cancel()
        await asyncio.gather(inbound, return_exceptions=True)
        await worker.close()
    code = worker.close_code if worker.close_code is not None else CloseCode.NORMAL
    try:
        await client.close(code, worker.close_reason or "")
    except RuntimeError:
        pass  # already closed by the bot


async def _client_to_worker(client: WebSocket, worker: ClientConnection) -> None:
    while True:
        message = await client.receive()
        if message["type"] == "websocket.disconnect":
            await worker.close()
            return
        data = message.get("bytes")
        await worker.send(data if data is not None else message.get("text") or "")


def _with_public_viewer_url(client: WebSocket, text: str) -> str:
    """The worker wrote its own address into `started`; the watch page is the ingress's, with the worker's viewer
    token (signed with the deployment's shared key)."""
    if '"started"' not in text:
        return text
    event = parse_event(text)
    if not isinstance(event, Started):
        return text
    token = urlsplit(event.viewer_url).fragment.removeprefix("token=") or None
    return event_message(replace(event, viewer_url=viewer_url(client, event.session_id, token)))


async def _refuse(client: WebSocket, code: str, message: str, close_code: CloseCode) -> None:
    try:
        await client.send_text(event_message(Error(code, message)))
        await client.close(close_code, code)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the bot has gone already
