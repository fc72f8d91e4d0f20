"""Per-client rate limits: a token bucket for each client address, and an ASGI middleware that holds one route to
it, refusing a request over the rate with 429 and `Retry-After` before its body is read."""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import error_response
from streaming.clock import Clock


class TokenBuckets:
    """A bucket per key, holding up to `capacity` tokens (default: a minute's worth) and regaining `per_minute`
    tokens a minute. Each bucket is kept as the one number that says it all, the time it will be full again
    (exact on any clock, where counting fractional tokens drifts); a full bucket is forgotten, being the same as a
    key never seen, so memory stays with the clients active lately."""

    def __init__(self, per_minute: float, clock: Clock, capacity: float | None = None) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate must be positive, not {per_minute} a minute")
        self.per_minute = per_minute
        self._interval = 60 / per_minute
        self._burst = (max(1.0, per_minute) if capacity is None else capacity) * self._interval
        self._clock = clock
        self._full_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._full_at)

    def take(self, key: str) -> float:
        """Spend one of `key`'s tokens and return 0; or, when it has none, spend nothing and return the seconds
        until it will have one."""
        now = self._clock.now()
        self._forget_full(now)
        full_at = max(self._full_at.get(key, now), now)
        wait = full_at + self._interval - now - self._burst
        if wait > 0:
            return wait
        self._full_at[key] = full_at + self._interval
        return 0.0

    def _forget_full(self, now: float) -> None:
        full = [key for key, full_at in self._full_at.items() if full_at <= now]
        for key in full:
            del self._full_at[key]


class ClientRateLimit:
    """Holds `method path` to `buckets`, one bucket per client address; every other request passes untouched.
    `what` names the requests in the refusal ("uploads")."""

    def __init__(self, app: ASGIApp, method: str, path: str, buckets: TokenBuckets, what: str) -> None:
        self.app = app
        self._method = method
        self._path = path
        self._buckets = buckets
        self._what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != self._method or scope["path"] != self._path:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self._buckets.take(client[0] if client else "unknown")
        if wait == 0:
            await self.app(scope, receive, send)
            return
        retry_after = math.ceil(wait)
        message = (
            f"too many {self._what} from your address: at most {self._buckets.per_minute:g} a minute; "
            f"try again in {retry_after} s"
        )
        response = error_response(429, "rate_limited", message, retry_after)
        await response(scope, receive, send)
