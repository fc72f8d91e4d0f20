"""The ingress guards the deployment like the single server guards itself, with no Ray instance: the token on the
API, credentials signed by a worker honoured, and the token passed on to the workers' own APIs."""

from __future__ import annotations

from typing import Any, cast

from starlette.testclient import TestClient

from server.access_control import AccessPolicy
from server.access_settings import AccessSettings
from server.cluster.ingress import create_ingress_app
from server.cluster.messages import WorkerAddress
from server.cluster.worker_pool import WorkerPool, WorkerReply
from server.settings import ServerSettings

TOKEN = "a-deployment-token-0123456789"
SHARED_KEY = b"k" * 32


class RecordingPool(WorkerPool):
    """A pool whose one worker answers 204 to everything, and that remembers what the ingress asked."""

    def __init__(self, token: str | None) -> None:
        super().__init__(cast(Any, _NoHandle()), cast(Any, None), token)
        self.asked: list[tuple[str, str]] = []

    async def workers(self) -> list[WorkerAddress]:
        return [WorkerAddress("w1", "http://127.0.0.1:1")]

    async def ask(self, worker: WorkerAddress, method: str, path: str, **request: object) -> WorkerReply | None:
        self.asked.append((method, path))
        return WorkerReply(204, b"", "")


class _NoHandle:
    def options(self, **_: object) -> _NoHandle:
        return self


def ingress(pool: WorkerPool) -> TestClient:
    settings = ServerSettings(access=AccessSettings(token=TOKEN))
    return TestClient(create_ingress_app(settings, pool, SHARED_KEY))


def test_the_ingress_wants_the_token_and_honours_a_hang_up_secret_a_worker_signed() -> None:
    pool = RecordingPool(TOKEN)
    with ingress(pool) as client:
        assert client.get("/api/sessions").status_code == 401
        assert client.delete("/api/sessions/s1").status_code == 401
        assert client.get("/healthz").status_code == 200
        worker_policy = AccessPolicy(AccessSettings(token=TOKEN), key=SHARED_KEY)
        secret = worker_policy.hang_up_secret("s1")
        own_peer = client.delete("/api/sessions/s1", headers={"Authorization": f"Bearer {secret}"})
        assert own_peer.status_code == 204
        other_session = client.delete("/api/sessions/s2", headers={"Authorization": f"Bearer {secret}"})
        assert other_session.status_code == 401
        config = client.get("/api/config", headers={"Authorization": f"Bearer {TOKEN}"})
        assert config.status_code == 200 and "ice_servers" in config.json()
    assert pool.asked == [("GET", "/healthz"), ("DELETE", "/api/sessions/s1")]


def test_the_token_goes_on_to_the_workers_own_apis() -> None:
    assert RecordingPool(TOKEN).worker_headers == {"Authorization": f"Bearer {TOKEN}"}
    assert RecordingPool(None).worker_headers == {}
