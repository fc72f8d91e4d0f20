"""Admission control and lookup: at most `max_sessions` sessions at once, WebRTC callers and bots alike (one pool);
one more is refused with a 503."""

from __future__ import annotations

import asyncio

from server.errors import ApiError
from server.metrics import ServerMetrics
from server.session_core import SessionCore


class SessionRegistry:
    def __init__(self, max_sessions: int, metrics: ServerMetrics) -> None:
        self._max_sessions = max_sessions
        self._metrics = metrics
        self._sessions: dict[str, SessionCore] = {}

    @property
    def max_sessions(self) -> int:
        return self._max_sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[SessionCore]:
        return list(self._sessions.values())

    def admit(self, session: SessionCore) -> None:
        """Count the session against the limit from the moment its offer is accepted, before negotiation."""
        if len(self._sessions) >= self._max_sessions:
            self._metrics.sessions_rejected.inc()
            raise ApiError(
                503,
                "server_full",
                f"the server is full ({len(self._sessions)} of {self._max_sessions} sessions in use); "
                "try again in a minute",
            )
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

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(session.close(reason) for session in self.sessions()))
