"""Uploads rate-limited per client address, on a virtual clock: a burst, then one every 60/N seconds, with a 429
that says when to come back."""

from __future__ import annotations

from dataclasses import replace

import httpx2

from server.app import create_app
from server.client_rate_limit import TokenBuckets
from server.settings import ServerSettings
from streaming.clock import VirtualClock
from tests.server.fake_renderer import LoudnessRenderer

NOT_AN_IMAGE = {"image": ("note.png", b"not an image", "image/png")}
"""Refused with a 415 at once: the limit counts attempts, whatever becomes of them."""


async def test_a_bucket_allows_a_burst_then_one_token_per_period() -> None:
    clock = VirtualClock()
    buckets = TokenBuckets(per_minute=10, clock=clock)
    assert [buckets.take("a") for _ in range(10)] == [0.0] * 10
    assert buckets.take("a") == 6.0
    assert buckets.take("b") == 0.0, "each client has a bucket of its own"
    await clock.advance(5.0)
    assert buckets.take("a") == 1.0, "a refusal spends nothing"
    await clock.advance(1.0)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == 6.0


async def test_buckets_that_have_refilled_are_forgotten() -> None:
    clock = VirtualClock()
    buckets = TokenBuckets(per_minute=60, clock=clock, capacity=2)
    for client in range(100):
        buckets.take(f"10.0.0.{client}")
    assert len(buckets) == 100
    await clock.advance(2.0)
    buckets.take("10.0.0.1")
    assert len(buckets) == 1


async def test_uploads_over_the_rate_get_429_with_retry_after(settings: ServerSettings) -> None:
    clock = VirtualClock()
    app = create_app(replace(settings, upload_rate=2), renderer=LoudnessRenderer(), clock=clock)
    transport = httpx2.ASGITransport(app=app, client=("192.0.2.1", 5000))
    neighbour = httpx2.ASGITransport(app=app, client=("192.0.2.2", 5000))
    async with (
        httpx2.AsyncClient(transport=transport, base_url="http://echolive.test") as http,
        httpx2.AsyncClient(transport=neighbour, base_url="http://echolive.test") as other_http,
    ):
        allowed = [(await http.post("/api/avatars", files=NOT_AN_IMAGE)).status_code for _ in range(2)]
        refused = await http.post("/api/avatars", files=NOT_AN_IMAGE)
        listing = await http.get("/api/avatars")
        other = await other_http.post("/api/avatars", files=NOT_AN_IMAGE)
        await clock.advance(30.0)
        later = await http.post("/api/avatars", files=NOT_AN_IMAGE)
    assert allowed == [415, 415]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "30"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "at most 2 a minute" in refused.json()["error"]["message"]
    assert listing.status_code == 200, "only uploads are limited"
    assert other.status_code == 415, "another address has its own allowance"
    assert later.status_code == 415
