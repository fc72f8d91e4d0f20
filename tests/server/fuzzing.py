"""What the fuzz tests share: the hypothesis profiles, the tally of inputs tried, the server's invariants after any
input, and a log watcher for exceptions the server only logs.

Profiles: `ci` (the default) tries a bounded, fixed sequence of inputs, so a run is quick and a failure repeats;
`deep` (`HYPOTHESIS_PROFILE=deep`) tries ten times as many, freshly random each run, to hunt for new bugs.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from httpx2 import Response
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import ServerSettings
from tests.server.fake_renderer import LoudnessRenderer

_SHARED = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    # The fixtures (an app, a server, a log watcher) are built once and shared by every example on purpose.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", derandomize=True, **_SHARED)
settings.register_profile("deep", derandomize=False, **_SHARED)
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
settings.load_profile("deep" if DEEP else "ci")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value (floats include NaN and infinities, which Python's `json` writes and reads)."""

inputs_tried: Counter[str] = Counter()
"""Inputs each property was tried on in this run; the test session prints them at the end."""


def examples(count: int) -> settings:
    """The settings for a property tried on `count` inputs in CI (ten times as many in the deep profile)."""
    return settings(max_examples=count * 10 if DEEP else count)


def tried(prop: str) -> None:
    inputs_tried[prop] += 1


@contextmanager
def app_client(directory: Path, media_timeout: float = 5.0) -> Iterator[TestClient]:
    """The app with the fake renderer, its lifespan running, behind Starlette's in-process client."""
    settings = ServerSettings(
        avatar_dir=directory / "avatars",
        ice_host_addresses=("127.0.0.1",),
        media_timeout=media_timeout,
        upload_rate=1e6,  # every fuzzed upload must reach the decoder, not the rate limit
    )
    with TestClient(create_app(settings, renderer=LoudnessRenderer())) as client:
        yield client


def assert_json_error(response: Response) -> None:
    """A refusal: 4xx with the one JSON error shape, never a 5xx."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], response.text[:500]
    assert isinstance(error["message"], str) and error["message"], response.text[:500]


def assert_no_sessions(client: TestClient) -> None:
    """Nothing leaked: no session listed, and health counts none."""
    assert client.get("/api/sessions").json()["sessions"] == []
    assert client.get("/healthz").json()["sessions"] == 0


class LogWatcher(logging.Handler):
    """Collects every record at ERROR or above, from any logger: an exception the server only logs (a task that
    failed in the background, a handler that caught and logged) is a bug even when the client got a clean answer."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def assert_quiet(self) -> None:
        messages = [f"{record.name}: {record.getMessage()}" for record in self.records]
        self.records.clear()
        assert not messages, messages


@contextmanager
def watching_logs() -> Iterator[LogWatcher]:
    watcher = LogWatcher()
    root = logging.getLogger()
    root.addHandler(watcher)
    try:
        yield watcher
    finally:
        root.removeHandler(watcher)
