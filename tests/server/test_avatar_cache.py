"""The prepared-avatar cache: least recently used out past a count or a memory bound, never the default, an avatar
a live session shows, or the one just added; its size and evictions in `/metrics`."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace

import httpx2
import numpy as np
from PIL import Image
from websockets.asyncio.client import connect

from server.app import create_app
from server.avatar_cache import AvatarCache, avatar_measure
from server.bot_protocol import PROTOCOL_VERSION, Start, start_message
from server.metrics import ServerMetrics
from server.settings import ServerSettings
from streaming.lite.default_portrait import default_portrait_path, load_portrait
from streaming.lite.renderer import LiteRenderer
from streaming.renderer import AvatarMemory
from tests.server.fake_renderer import LoudnessRenderer
from tests.server.live_server import serve_in_thread
from tests.server.test_webrtc_session import metric

UPLOAD_TIMEOUT = 60.0
"""Seconds an upload (a face detection) may take on a loaded machine: a guard against hanging, not a measure."""


@dataclass(frozen=True)
class Sized:
    host: int
    device: int = 0


def measure(avatar: Sized) -> AvatarMemory:
    return AvatarMemory(avatar.host, avatar.device)


def cache(max_avatars: int = 100, max_bytes: int = 10**9, keep: tuple[str, ...] = ()) -> AvatarCache[Sized]:
    return AvatarCache(max_avatars, max_bytes, measure, keep=lambda: keep)


def test_the_least_recently_used_goes_first_past_the_count() -> None:
    avatars = cache(max_avatars=2)
    avatars.put("a", Sized(1))
    avatars.put("b", Sized(1))
    assert avatars.get("a") == Sized(1)
    avatars.put("c", Sized(1))
    assert ("a" in avatars, "b" in avatars, "c" in avatars) == (True, False, True)
    assert avatars.get("b") is None
    assert avatars.evictions == 1


def test_memory_on_the_device_counts_against_the_bound() -> None:
    avatars = cache(max_bytes=100)
    avatars.put("a", Sized(10, device=50))
    avatars.put("b", Sized(5, device=25))
    assert avatars.memory == AvatarMemory(15, 75)
    avatars.put("c", Sized(5, device=25))
    assert "a" not in avatars
    assert avatars.memory == AvatarMemory(10, 50)


def test_kept_and_newest_avatars_stay_even_over_the_bounds() -> None:
    avatars = cache(max_avatars=1, max_bytes=10, keep=("default", "in-use"))
    avatars.put("default", Sized(8))
    avatars.put("in-use", Sized(8))
    avatars.put("old", Sized(1))
    avatars.put("new", Sized(100))
    assert ("default" in avatars, "in-use" in avatars, "old" in avatars, "new" in avatars) == (True, True, False, True)
    assert len(avatars) == 3 and avatars.evictions == 1


def test_metrics_follow_the_cache() -> None:
    metrics = ServerMetrics()
    avatars: AvatarCache[Sized] = AvatarCache(1, 10**9, measure, keep=lambda: (), metrics=metrics)
    avatars.put("a", Sized(3, device=7))
    avatars.put("b", Sized(2, device=5))
    exposition = metrics.exposition().decode()
    assert metric(exposition, "echolive_avatar_cache_avatars") == 1
    assert metric(exposition, 'echolive_avatar_cache_bytes{memory="host"}') == 2
    assert metric(exposition, 'echolive_avatar_cache_bytes{memory="device"}') == 5
    assert metric(exposition, "echolive_avatar_cache_evictions_total") == 1


def test_lite_counts_its_arrays_and_a_renderer_without_a_measure_gets_one() -> None:
    renderer = LiteRenderer()
    avatar = renderer.prepare_avatar(load_portrait(default_portrait_path()))
    memory = avatar_measure(renderer)(avatar)
    assert memory.device_bytes == 0
    assert memory.host_bytes >= avatar.canvas.nbytes
    fake = LoudnessRenderer()
    assert avatar_measure(fake)(fake.prepare_avatar(load_portrait(default_portrait_path()))) == AvatarMemory(0)
    assert avatar_measure(fake)([np.zeros(10, np.uint8), avatar.canvas]) == AvatarMemory(10 + avatar.canvas.nbytes)


def portrait_png() -> bytes:
    buffer = io.BytesIO()
    Image.open(default_portrait_path()).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_live_sessions_avatar_is_kept_while_uploads_push_others_out(settings: ServerSettings) -> None:
    app = create_app(replace(settings, avatar_cache_size=1), renderer=LoudnessRenderer())
    with serve_in_thread(app) as url:
        async with httpx2.AsyncClient(base_url=url, timeout=UPLOAD_TIMEOUT) as http:

            async def upload(name: str) -> None:
                files = {"image": (f"{name}.png", portrait_png(), "image/png")}
                response = await http.post("/api/avatars", files=files)
                assert response.status_code == 201, response.text

            await upload("shown")
            async with connect(url.replace("http://", "ws://") + "/api/ws") as bot:
                await bot.send(start_message(Start(PROTOCOL_VERSION, avatar="shown", output="viewer")))
                assert json.loads(await bot.recv())["type"] == "started"
                await upload("passing")
                await upload("latest")
                sessions = (await http.get("/api/sessions")).json()["sessions"]
                exposition = (await http.get("/metrics")).text
    assert [session["avatar"] for session in sessions] == ["shown"]
    assert metric(exposition, "echolive_avatar_cache_avatars") == 3, "the default, the one shown, the latest"
    assert metric(exposition, "echolive_avatar_cache_evictions_total") == 1, "only the one passing through"
