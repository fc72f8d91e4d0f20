"""The Ray Serve application: an ingress, the worker replicas and the worker directory, and how many workers.

    client ──HTTP/WS──▶ Ingress (FastAPI, no renderer) ──streaming request per session──▶ SessionWorker × N
       ▲                   │ lists, ends, viewers, bot relay ──▶ each worker's own API (found in WorkerDirectory)
       └───────────────── WebRTC media, straight from the worker's host ◀────────────────────────┘

Ray Serve places each session (its router sends the streaming request to a replica below
`max_ongoing_requests`, the worker's capacity), refuses more when every replica is full (beyond
`max_queued_requests`, a 503 with `Retry-After` at the ingress), replaces a replica that dies or fails its health
check, and autoscales between `min_workers` and `max_workers` on ongoing requests, that is, on live sessions.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from server.cluster.capacity import worker_capacity
from server.cluster.directory import WorkerDirectory
from server.cluster.ingress import create_ingress_app
from server.cluster.worker import SessionWorker
from server.cluster.worker_pool import QUEUED_SESSIONS, WorkerPool
from server.settings import ServerSettings

AUTOSCALING_TARGET = 0.75
"""Share of a worker's capacity in use, on average, at which Ray Serve adds a worker (and below which it removes
one): a new worker starts while the others still have room, since starting one takes a while."""
INGRESS_CONCURRENCY = 10_000
"""Requests one ingress replica handles at once; every live session holds one (its relay or its placement)."""
WORKER_HEALTH_PERIOD = 2.0


@dataclass(frozen=True)
class ClusterOptions:
    """How many workers: a fixed `workers` (None: one per GPU, 1 without), or autoscaling between `min_workers` and
    `max_workers` when either is given."""

    workers: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "min_workers", "max_workers"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "min_workers" else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be at least {0 if name == 'min_workers' else 1}")
        if self.min_workers is not None and self.max_workers is not None and self.min_workers > self.max_workers:
            raise ValueError(f"--min-workers ({self.min_workers}) is above --max-workers ({self.max_workers})")

    @property
    def autoscaling(self) -> bool:
        return self.min_workers is not None or self.max_workers is not None


def build_application(settings: ServerSettings, options: ClusterOptions, gpus: float) -> Application:
    """The application for a cluster where Ray sees `gpus` GPUs: a worker per GPU, each with one GPU (a CPU
    worker takes one CPU)."""
    capacity = worker_capacity(settings)
    per_gpu = gpus >= 1
    default_workers = max(1, math.floor(gpus)) if per_gpu else 1
    scaling: dict[str, Any]
    if options.autoscaling:
        least = options.min_workers if options.min_workers is not None else 1
        most = options.max_workers if options.max_workers is not None else max(least, default_workers)
        start = min(max(options.workers or least, least), most)
        scaling = {
            "autoscaling_config": {
                "min_replicas": least,
                "initial_replicas": max(start, 1),
                "max_replicas": most,
                "target_ongoing_requests": max(AUTOSCALING_TARGET * capacity, 0.5),
            }
        }
    else:
        scaling = {"num_replicas": options.workers or default_workers}
    workers = serve.deployment(
        name="SessionWorker",
        max_ongoing_requests=capacity,
        max_queued_requests=QUEUED_SESSIONS,
        health_check_period_s=WORKER_HEALTH_PERIOD,
        ray_actor_options={"num_gpus": 1, "num_cpus": 1} if per_gpu else {"num_cpus": 1},
        **scaling,
    )(SessionWorker)
    directory = serve.deployment(name="WorkerDirectory", ray_actor_options={"num_cpus": 0})(WorkerDirectory).bind()
    ingress = serve.deployment(
        name="Ingress", max_ongoing_requests=INGRESS_CONCURRENCY, ray_actor_options={"num_cpus": 0}
    )(Ingress)
    # Viewer tokens and hang-up secrets are signed by the worker holding the session and checked by the ingress.
    access_key = secrets.token_bytes(32)
    return ingress.bind(settings, workers.bind(settings, directory, access_key), directory, access_key)


@serve.ingress()
class Ingress:
    """The ingress replica: its app is built once the pool that reaches the workers exists."""

    def __init__(
        self,
        settings: ServerSettings,
        workers: DeploymentHandle[Any],
        directory: DeploymentHandle[Any],
        access_key: bytes,
    ) -> None:
        self._settings = settings
        self._pool = WorkerPool(workers, directory, settings.access.token)
        self._access_key = access_key

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_ingress_app(self._settings, self._pool, self._access_key)
