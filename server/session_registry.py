"""Admission control and lookup: WebRTC callers and bots share one pool of sessions, and one more is admitted only
while `AdmissionPolicy` says every session still renders in real time (and `max_sessions` is not reached); otherwise
it is refused with a 503 and a `Retry-After`.

Admission comes before any expensive work: a caller first `reserve()`s a slot (a ticket, counted as a session from
that moment), then prepares the avatar and negotiates, then `admit()`s its session on the ticket. A ticket not
used by then is released on leaving its `with` block, whatever went wrong (a bad avatar, a failed negotiation, a
client that went away).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from server.admission import AdmissionPolicy
from server.errors import ApiError
from server.metrics import ServerMetrics
from server.session_core import SessionCore


class AdmissionTicket:
    """A slot held for a session being set up; `with` releases it unless a session was admitted on it."""

    def __init__(self, give_back: Callable[[], None]) -> None:
        self._give_back = give_back
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._give_back()

    def __enter__(self) -> AdmissionTicket:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


class SessionRegistry:
    def __init__(self, policy: AdmissionPolicy, metrics: ServerMetrics) -> None:
        self.policy = policy
        self._metrics = metrics
        self._sessions: dict[str, SessionCore] = {}
        self._reserved = 0

    @property
    def max_sessions(self) -> int:
        return self.policy.max_sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[SessionCore]:
        return list(self._sessions.values())

    def capacity(self) -> int:
        """How many sessions fit at once, from the render times and device memory measured now."""
        return self.policy.capacity(len(self._sessions) + self._reserved)

    def reserve(self) -> AdmissionTicket:
        """Hold a slot for one more session, or refuse it with a 503 (`server_full`, `no_headroom` or
        `no_device_memory`) whose `Retry-After` says when to ask again."""
        refusal = self.policy.refusal(len(self._sessions) + self._reserved)
        if refusal is not None:
            self._metrics.sessions_rejected.inc()
            self._metrics.admission_refusals.labels(reason=refusal.reason).inc()
            raise ApiError(503, refusal.reason, refusal.message, retry_after=refusal.retry_after)
        self._reserved += 1
        return AdmissionTicket(self._give_back_slot)

    def _give_back_slot(self) -> None:
        self._reserved -= 1

    def admit(self, session: SessionCore, ticket: AdmissionTicket) -> None:
        """Count the session on the slot `ticket` holds, from the moment its offer is accepted."""
        if not ticket.held:
            raise RuntimeError("admit a session on a ticket that still holds its slot")
        ticket.release()
        self._sessions[session.session_id] = session
        self._metrics.sessions_started.inc()
        self._metrics.sessions_active.set(len(self._sessions))

    def get(self, session_id: str) -> SessionCore:
        session = self._sessions.get(session_id)
        if session is None:
            raise ApiError(404, "unknown_session", f"there is no session {session_id!r}; it may have ended already")
        return session

    def discard(self, session: SessionCore) -> None:
        if self._sessions.pop(session.session_id, None) is not None:
            self._metrics.sessions_active.set(len(self._sessions))

    def utilisation(self) -> float:
        """Share of the renderer's lanes the live sessions keep busy drawing every frame (see `AdmissionPolicy`)."""
        return self.policy.utilisation(len(self._sessions))

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(session.close(reason) for session in self.sessions()))
