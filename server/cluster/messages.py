"""What the ingress and the worker replicas tell each other, as plain dataclasses that Ray pickles.

A session is one streaming request from the ingress to a worker: its first item is `Placed` (or `Refused`), its
last `SessionEnded`. A bot's session is a `BotLease` instead (see `server.cluster.bot_relay`).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.session_core import SessionSummary
from server.signalling import SessionAnswer


@dataclass(frozen=True, slots=True)
class Placed:
    """The worker answered the offer and the session runs there."""

    worker_id: str
    answer: SessionAnswer


@dataclass(frozen=True, slots=True)
class Refused:
    """The worker refused the offer, with the error the single server would answer."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: str


@dataclass(frozen=True, slots=True)
class BotLease:
    """A session slot on a worker: the bot's WebSocket is relayed to `socket_url`, that worker's own bot endpoint,
    with `lease_id` in the lease header; the slot is held while that connection lasts."""

    worker_id: str
    socket_url: str
    lease_id: str


@dataclass(frozen=True, slots=True)
class WorkerAddress:
    """Where a worker replica serves its own HTTP API (sessions, viewers, avatars, health, metrics)."""

    worker_id: str
    url: str


@dataclass(frozen=True, slots=True)
class PlacedSession(SessionSummary):
    """A session of the whole deployment, and the worker replica that holds it."""

    worker: str = ""
