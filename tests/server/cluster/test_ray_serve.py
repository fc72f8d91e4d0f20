"""The server on Ray Serve, end to end on one local Ray instance (two CPUs, loopback): sessions placed on two
lite worker replicas through the ingress, WebRTC media straight from the worker, the bot API relayed, the whole
deployment listed and ended from the ingress, back-pressure, and the faults: a worker dies, the ingress restarts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx2
import numpy as np
import numpy.typing as npt
import pytest
import ray

from server.bot_client import connect_bot
from server.bot_protocol import Error, Started
from server.cluster.deployment import ClusterOptions
from server.ice_addresses import restrict_ice_host_addresses
from server.settings import ServerSettings
from tests.server.cluster.ray_instance import deploy, local_ray, poll, replica_actor, wait_for_workers
from tests.server.loopback_call import LoopbackCall
from tests.streaming.signals import spoken

pytestmark = pytest.mark.slow

WORKERS = 2
PER_WORKER = 2
RATE = 24_000


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The application with two workers of two sessions each; the ingress's base URL."""
    settings = ServerSettings(
        avatar_dir=tmp_path_factory.mktemp("cluster") / "avatars",
        ice_host_addresses=("127.0.0.1",),
        media_timeout=5.0,
        size=128,
        fps=12,  # measured admission leaves Ray's slot count the only limit, even on a loaded machine
        max_sessions=PER_WORKER,
    )
    restrict_ice_host_addresses(("127.0.0.1",))  # this process's clients, like the workers, on loopback only
    with local_ray() as base_url:
        deploy(base_url, settings, ClusterOptions(workers=WORKERS))
        yield base_url


@pytest.fixture
async def http(ingress: str) -> httpx2.AsyncClient:
    async with httpx2.AsyncClient(base_url=ingress, timeout=30) as client:
        yield client  # type: ignore[misc]


@pytest.fixture(scope="module")
def phrase() -> npt.NDArray[np.int16]:
    return np.round(np.clip(spoken("Hello there, my name is Eileen.", RATE), -1, 1) * 32767).astype(np.int16)


async def started_call(http: httpx2.AsyncClient, speech: npt.NDArray[np.float32]) -> LoopbackCall:
    call = LoopbackCall(http, speech, read_mouth=None)
    response = await call.start()
    assert response.status_code == 201, response.text
    await call.wait_for_frames(5)
    return call


async def placements(http: httpx2.AsyncClient) -> dict[str, str]:
    """Session id → the worker holding it, from the ingress's list."""
    listed = (await http.get("/api/sessions")).json()
    return {session["session_id"]: session["worker"] for session in listed["sessions"]}


async def test_a_webrtc_session_runs_on_a_worker_and_is_listed_and_ended_from_the_ingress(
    http: httpx2.AsyncClient, speech: npt.NDArray[np.float32]
) -> None:
    call = await started_call(http, speech)
    try:
        assert {(frame.width, frame.height) for frame in call.frames} == {(128, 128)}
        assert "127.0.0.1" in call.answer_sdp, "the worker's own ICE candidates"
        placed = await placements(http)
        health = (await http.get("/healthz")).json()
        assert call.session_id in placed
        assert placed[call.session_id] in {worker["worker"] for worker in health["workers"]}
        assert (health["status"], health["sessions"], health["max_sessions"]) == ("ok", 1, WORKERS * PER_WORKER)
        metrics = (await http.get("/metrics")).text
        assert f'echolive_sessions_active{{worker="{placed[call.session_id]}"}} 1.0' in metrics
        assert (await http.delete(f"/api/sessions/{call.session_id}")).status_code == 204
        assert call.session_id not in await placements(http)
        unknown = await http.delete(f"/api/sessions/{call.session_id}")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_session")
    finally:
        await call.close()


async def test_sessions_spread_over_the_workers_and_a_full_deployment_refuses_until_one_ends(
    http: httpx2.AsyncClient, speech: npt.NDArray[np.float32]
) -> None:
    calls = [await started_call(http, speech) for _ in range(WORKERS * PER_WORKER)]
    try:
        assert sorted(Counter((await placements(http)).values()).values()) == [PER_WORKER] * WORKERS
        one_too_many = LoopbackCall(http, speech, read_mouth=None)
        calls.append(one_too_many)
        refused = await one_too_many.start()
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "server_full"
        assert int(refused.headers["retry-after"]) > 0
        assert (await http.delete(f"/api/sessions/{calls[0].session_id}")).status_code == 204
        calls.append(await started_call(http, speech))
    finally:
        for call in calls:
            await call.close()
        await poll(lambda: _no_sessions(http))


async def test_a_bot_session_is_relayed_to_one_worker_for_its_whole_life(
    ingress: str, http: httpx2.AsyncClient, phrase: npt.NDArray[np.int16]
) -> None:
    async with connect_bot(ingress.replace("http://", "ws://") + "/api/ws", sample_rate=RATE) as bot:
        started = bot.started
        assert started.viewer_url == f"{ingress}/watch/{started.session_id}"
        for offset in range(0, len(phrase), RATE // 10):
            await bot.send_audio(phrase[offset : offset + RATE // 10])
        await bot.flush()
        frames = 0
        async with asyncio.timeout(20):
            async for message in bot:
                frames += not isinstance(message, Started | Error) and hasattr(message, "jpeg")
                if frames >= 25:
                    break
        placed = await placements(http)
        assert started.session_id in placed
    await poll(lambda: _no_sessions(http))


async def test_a_worker_that_dies_ends_its_sessions_only_and_ray_replaces_it(
    ingress: str, http: httpx2.AsyncClient, speech: npt.NDArray[np.float32]
) -> None:
    async with connect_bot(ingress.replace("http://", "ws://") + "/api/ws", sample_rate=RATE) as bot:
        victim = (await placements(http))[bot.started.session_id]
        # The bot holds one of the victim's slots: three calls fill the deployment, one of them on the victim.
        calls = [await started_call(http, speech) for _ in range(WORKERS * PER_WORKER - 1)]
        placed = await placements(http)
        doomed = [call for call in calls if placed[call.session_id] == victim]
        survivors = [call for call in calls if placed[call.session_id] != victim]
        assert len(doomed) == PER_WORKER - 1 and len(survivors) == PER_WORKER

        ray.kill(replica_actor("SessionWorker", victim), no_restart=True)
        async with asyncio.timeout(20):
            errors = [message async for message in bot if isinstance(message, Error)]
        assert [error.code for error in errors] == ["worker_lost"]
        assert bot.close_code == 1011
        await poll(lambda: _not_listed(http, doomed[0].session_id))
        for call in survivors:
            await call.wait_for_frames(len(call.frames) + 10)
    replacement = set(await asyncio.to_thread(wait_for_workers, ingress, WORKERS, frozenset({victim})))
    for call in calls:
        await call.close()
    await poll(lambda: _no_sessions(http))
    fresh = [await started_call(http, speech) for _ in range(PER_WORKER + 1)]
    assert set((await placements(http)).values()) & replacement, "the replacement takes new sessions"
    for call in fresh:
        await call.close()
    await poll(lambda: _no_sessions(http))


async def test_sessions_go_on_while_the_ingress_restarts(
    ingress: str, http: httpx2.AsyncClient, speech: npt.NDArray[np.float32]
) -> None:
    call = await started_call(http, speech)
    ingress_ids = [
        name.split("#")[-1]
        for name in (actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True))
        if name.startswith("SERVE_REPLICA::echolive#Ingress#")
    ]
    async with connect_bot(ingress.replace("http://", "ws://") + "/api/ws", sample_rate=RATE) as bot:
        ray.kill(replica_actor("Ingress", ingress_ids[0]), no_restart=False)
        async with asyncio.timeout(20):
            async for _ in bot:
                pass  # a bot's connection ran through the ingress, and ends with it
    await asyncio.to_thread(wait_for_workers, ingress, WORKERS)
    assert call.session_id in await placements(http)
    await call.wait_for_frames(len(call.frames) + 25)
    # The bot's slot came back with its connection: the other three slots all take a session.
    others = [await started_call(http, speech) for _ in range(WORKERS * PER_WORKER - 1)]
    for session in [call, *others]:
        assert (await http.delete(f"/api/sessions/{session.session_id}")).status_code == 204
        await session.close()


async def _no_sessions(http: httpx2.AsyncClient) -> bool:
    return not await placements(http)


async def _not_listed(http: httpx2.AsyncClient, session_id: str | None) -> bool:
    return session_id not in await placements(http)
