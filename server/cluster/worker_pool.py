"""The ingress's view of the worker replicas: sessions placed through Ray Serve, and each worker's own HTTP API
found through the `WorkerDirectory`.

Placement is Ray Serve's: a session is a streaming request whose first item is the answer; the router sends it to
a replica with room (`max_ongoing_requests` is the worker's capacity) and applies back-pressure when none has:
at most `QUEUED_SESSIONS` offers wait for a slot, each for up to `PLACEMENT_TIMEOUT`, and any more are refused
at once; either refusal is a 503 with `Retry-After` for the client.

Once answered, the ingress keeps the request open (reading it to its end) so the session keeps its slot; a worker
that dies ends the request with an error, which is logged as the session's end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from server.cluster.messages import BotLease, Placed, Refused, SessionEnded, WorkerAddress
from server.errors import ApiError
from server.signalling import SessionAnswer, SessionOffer

logger = logging.getLogger(__name__)

PLACEMENT_TIMEOUT = 10.0
"""Seconds an offer may wait for a slot and its answer (preparing a new avatar included)."""
QUEUED_SESSIONS = 1
"""Offers that may wait for a slot when every worker is full (Ray Serve's `max_queued_requests`)."""
RETRY_AFTER = 5
"""Seconds a refused client is told to wait before it tries again."""
WORKER_REQUEST_TIMEOUT = 10.0


class DeploymentFull(Exception):
    """No worker replica has room for one more session."""

    retry_after = RETRY_AFTER


@dataclass(frozen=True)
class WorkerReply:
    """A worker API's answer, passed on to the client as it is."""

    status: int
    body: bytes
    content_type: str


class WorkerPool:
    def __init__(
        self, workers: DeploymentHandle[Any], directory: DeploymentHandle[Any], token: str | None = None
    ) -> None:
        """`token`: the deployment's bearer token, which the workers' own APIs require like the ingress."""
        self._workers = workers.options(stream=True)
        self.worker_headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self._directory = directory
        self._held: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def place(self, offer: SessionOffer) -> SessionAnswer:
        """Start a WebRTC session on a worker with room; its answer."""
        stream = cast(DeploymentResponseGenerator[Any], self._workers.webrtc.remote(offer))
        first = await _first_item(stream)
        if isinstance(first, Refused):
            # The worker measured no headroom below its slot count (or could not prepare the avatar).
            retry_after = RETRY_AFTER if first.status == 503 else None
            raise ApiError(first.status, first.code, first.message, retry_after=retry_after)
        assert isinstance(first, Placed)
        self._hold(stream, first.answer.session_id, first.worker_id)
        return first.answer

    @asynccontextmanager
    async def bot_lease(self) -> AsyncIterator[BotLease]:
        """A slot on a worker for a bot's session, held until the block exits."""
        stream = cast(DeploymentResponseGenerator[Any], self._workers.bot.remote())
        try:
            lease = await _first_item(stream)
            assert isinstance(lease, BotLease)
            yield lease
        finally:
            stream.cancel()

    async def workers(self) -> list[WorkerAddress]:
        found: list[WorkerAddress] = await self._directory.workers.remote()
        return found

    async def ask(self, worker: WorkerAddress, method: str, path: str, **request: object) -> WorkerReply | None:
        """One request to a worker's own API; None when the worker cannot be reached (it died, or is leaving)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_REQUEST_TIMEOUT))
        try:
            async with self._http.request(
                method,
                worker.url + path,
                headers=self.worker_headers,
                **request,  # type: ignore[arg-type]
            ) as response:
                body = await response.read()
                return WorkerReply(response.status, body, response.content_type)
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.info("worker %s did not answer %s %s (%r)", worker.worker_id, method, path, error)
            return None

    async def ask_each(self, method: str, path: str) -> list[tuple[WorkerAddress, WorkerReply]]:
        """The same request to every worker at once; the answers of those that could be reached."""
        workers = await self.workers()
        replies = await asyncio.gather(*(self.ask(worker, method, path) for worker in workers))
        return [(worker, reply) for worker, reply in zip(workers, replies, strict=True) if reply is not None]

    async def ask_holder(self, method: str, path: str, **request: object) -> WorkerReply:
        """A request about one session, to the worker that holds it; 404 when none does."""
        for worker in await self.workers():
            reply = await self.ask(worker, method, path, **request)
            if reply is not None and not (reply.status == 404 and b'"unknown_session"' in reply.body):
                return reply
        raise ApiError(404, "unknown_session", f"there is no session at {path!r}; it may have ended already")

    async def ask_any(self, method: str, path: str, **request: object) -> WorkerReply:
        """A request any worker can answer (avatars: every worker reads the same avatar folder)."""
        for worker in await self.workers():
            reply = await self.ask(worker, method, path, **request)
            if reply is not None:
                return reply
        raise ApiError(503, "no_workers", "no worker replica is running yet; try again in a few seconds")

    async def aclose(self) -> None:
        for task in self._held:
            task.cancel()
        await asyncio.gather(*self._held, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def _hold(self, stream: DeploymentResponseGenerator[Any], session_id: str, worker_id: str) -> None:
        task = asyncio.create_task(_read_to_end(stream, session_id, worker_id), name=f"hold-{session_id}")
        self._held.add(task)
        task.add_done_callback(self._held.discard)


async def _first_item(stream: DeploymentResponseGenerator[Any]) -> object:
    try:
        async with asyncio.timeout(PLACEMENT_TIMEOUT):
            return await stream.__anext__()
    except (BackPressureError, TimeoutError) as error:
        stream.cancel()
        raise DeploymentFull from error


async def _read_to_end(stream: DeploymentResponseGenerator[Any], session_id: str, worker_id: str) -> None:
    try:
        async for item in stream:
            if isinstance(item, SessionEnded):
                logger.info("session %s on worker %s ended (%s)", session_id, worker_id, item.reason)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # the replica died: Ray reports it as the request's failure
        logger.warning("session %s ended with its worker %s (%r)", session_id, worker_id, error)
