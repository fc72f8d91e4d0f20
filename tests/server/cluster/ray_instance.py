"""A local Ray instance and the application on it, for the cluster tests and `bench/cluster.py`: loopback only,
two CPUs, no dashboard."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import ray
from ray import serve

from server.cluster.deployment import ClusterOptions, build_application
from server.settings import ServerSettings

APP_NAME = "echolive"
READY_WAIT = 120.0
STARTUP_ATTEMPTS = 2
"""A starved machine can make Ray's raylet miss its startup deadline once."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def local_ray(cpus: int = 2) -> Iterator[str]:
    """Start Ray and Serve's HTTP proxy on 127.0.0.1; yield the proxy's base URL; shut both down."""
    for attempt in range(STARTUP_ATTEMPTS):
        try:
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                configure_logging=False,
                log_to_driver=False,
            )
            break
        except Exception as error:  # Ray says only `Exception` when its raylet misses its fixed 30 s to register
            ray.shutdown()
            if "timed out during startup" not in str(error) or attempt == STARTUP_ATTEMPTS - 1:
                raise
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def deploy(base_url: str, settings: ServerSettings, options: ClusterOptions) -> None:
    """Run the application (replacing one already running) and wait until every worker answers."""
    serve.run(build_application(settings, options, gpus=0.0), name=APP_NAME, route_prefix="/")
    wait_for_workers(base_url, options.workers or 1)


def wait_for_workers(base_url: str, count: int, avoid: frozenset[str] = frozenset()) -> list[str]:
    """Poll `/healthz` until `count` workers answer, none of them in `avoid`; their ids."""
    deadline = time.monotonic() + READY_WAIT
    with httpx2.Client(base_url=base_url, timeout=10) as http:
        while True:
            try:
                health = http.get("/healthz").json()
                workers = [worker["worker"] for worker in health["workers"]]
                if len(workers) == count and not avoid & set(workers):
                    return workers
            except (httpx2.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} workers did not come up within {READY_WAIT:.0f} s")
            time.sleep(0.25)


def replica_actor(deployment: str, replica_id: str) -> ray.actor.ActorHandle[Any]:
    """The Ray actor behind one replica of a deployment of the application."""
    return ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#{deployment}#{replica_id}", namespace="serve")


async def poll(condition_met: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Ask `condition_met()` until it says yes, for up to `seconds` (the deployment changes on its own time)."""
    async with asyncio.timeout(seconds):
        while True:
            if await condition_met():
                return
            await asyncio.sleep(0.2)
