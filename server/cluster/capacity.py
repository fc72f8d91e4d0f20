"""How many sessions one worker replica holds: both its own admission limit and Ray Serve's
`max_ongoing_requests`, so the router never places a session that the worker would refuse.

Today the configured `max_sessions`; the one place to take a measured capacity from instead.
"""

from __future__ import annotations

from server.settings import ServerSettings


def worker_capacity(settings: ServerSettings) -> int:
    return settings.max_sessions
