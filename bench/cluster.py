"""Sessions on Ray Serve: how many run at full frame rate per worker, how Ray Serve spreads them, and what Ray adds
to session set-up time (offer in, answer out) against the single-process server, measured side by side.

Starts a local Ray instance (2 CPUs, loopback) with `--workers` lite worker replicas of `--per-worker` sessions
each, and a single-process server with the same settings in this process. Then:

1. set-up: `--setups` offers alternately to the single server and to the ingress, each hung up once answered;
2. load: sessions are added through the ingress one at a time, each speaking, until every worker is full; after
   each, every session's received frame rate is measured over `--window` seconds. Full frame rate: the slowest
   session receives at least 95% of it.

The aiortc clients run in this process and decode every session's video, so they take CPU from the workers on
a small machine: the count is a floor.

    python -m bench.cluster [--workers 2] [--per-worker 4] [--size 256] [--setups 12] [--window 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx2
import numpy as np

from bench.lite_fps import speech_like
from server.app import create_app
from server.cluster.deployment import ClusterOptions
from server.ice_addresses import restrict_ice_host_addresses
from server.settings import ServerSettings
from server.speaking_track import MIC_RATE
from streaming.frames import SAMPLE_RATE
from streaming.lite.renderer import LiteRenderer
from tests.server.cluster.ray_instance import deploy, local_ray
from tests.server.live_server import serve_in_thread
from tests.server.loopback_call import LoopbackCall

FULL_RATE = 0.95
SETTLE = 2.0
"""Seconds a new session runs before the rates are measured."""


async def setup_times(base_url: str, speech: np.ndarray, count: int) -> list[float]:
    """Seconds from posting an offer to holding the answer, for `count` calls one after another."""
    times = []
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
        for _ in range(count):
            call = LoopbackCall(http, speech, read_mouth=None)
            began = time.perf_counter()
            response = await call.start()
            times.append(time.perf_counter() - began)
            assert response.status_code == 201, response.text
            await http.delete(f"/api/sessions/{call.session_id}")
            await call.close()
    return times


async def load(base_url: str, speech: np.ndarray, capacity: int, fps: float, window: float) -> list[dict[str, object]]:
    """Add sessions one at a time; after each, every session's received frame rate and where the sessions run."""
    steps: list[dict[str, object]] = []
    calls: list[LoopbackCall] = []
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
        try:
            while len(calls) < capacity:
                call = LoopbackCall(http, speech, read_mouth=None)
                calls.append(call)
                response = await call.start()
                assert response.status_code == 201, response.text
                await asyncio.sleep(SETTLE)
                counts = [len(c.frames) for c in calls]
                await asyncio.sleep(window)
                rates = [(len(c.frames) - before) / window for c, before in zip(calls, counts, strict=True)]
                listed = (await http.get("/api/sessions")).json()["sessions"]
                spread = sorted(Counter(session["worker"] for session in listed).values(), reverse=True)
                steps.append({"sessions": len(calls), "slowest_fps": min(rates), "spread": spread})
                print(f"  {len(calls)} sessions: slowest {min(rates):.1f} fps, per worker {spread}", flush=True)
        finally:
            for call in calls:
                await call.close()
    return steps


def describe(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"median {1000 * statistics.median(times):.0f} ms, p90 {1000 * p90:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-worker", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--setups", type=int, default=12)
    parser.add_argument("--window", type=float, default=4.0)
    args = parser.parse_args()

    speech = np.repeat(speech_like(90.0), MIC_RATE // SAMPLE_RATE).astype(np.float32)
    restrict_ice_host_addresses(("127.0.0.1",))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as folder:
        settings = ServerSettings(
            avatar_dir=Path(folder) / "avatars",
            ice_host_addresses=("127.0.0.1",),
            size=args.size,
            max_sessions=args.per_worker,
        )
        single_app = create_app(settings, renderer=LiteRenderer(frame_size=(args.size, args.size)))
        with serve_in_thread(single_app) as single_url, local_ray() as ray_url:
            deploy(ray_url, settings, ClusterOptions(workers=args.workers))
            single: list[float] = []
            through_ray: list[float] = []
            for _ in range(args.setups):
                single += asyncio.run(setup_times(single_url, speech, 1))
                through_ray += asyncio.run(setup_times(ray_url, speech, 1))
            print(f"set-up, single process: {describe(single)}")
            print(f"set-up, through Ray Serve: {describe(through_ray)}")
            print(f"Ray adds: {1000 * (statistics.median(through_ray) - statistics.median(single)):.0f} ms (medians)")
            steps = asyncio.run(load(ray_url, speech, args.workers * args.per_worker, 25.0, args.window))
            full = [step for step in steps if float(step["slowest_fps"]) >= FULL_RATE * 25.0]  # type: ignore[arg-type]
            most = full[-1] if full else None
            if most is None:
                print("no session count reached full frame rate")
            else:
                sessions, spread = most["sessions"], most["spread"]
                print(f"at full frame rate: {sessions} sessions over {args.workers} workers, per worker {spread}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
