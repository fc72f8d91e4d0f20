"""Request bodies and WebSocket messages held to their limits while they arrive: on the middleware alone, and
through a real uvicorn server with a chunked upload (which declares no length) and an oversized bot message."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest
from PIL import Image
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from server.bot_protocol import PROTOCOL_VERSION, Start, start_message
from server.request_limits import MESSAGE_TOO_BIG, MESSAGE_TOO_BIG_REASON, RequestSizeLimits
from server.settings import ServerSettings
from streaming.lite.default_portrait import default_portrait_path
from tests.server.fake_renderer import LoudnessRenderer
from tests.server.live_server import serve_in_thread

LIMIT = 1000
CHUNK = 300
CLOSE_WAIT = 20.0
"""Seconds an oversized WebSocket message may take to close its connection (a guard against hanging, not a timing
assertion)."""


class BodyReader:
    """An ASGI app that reads the whole body, then answers 200 with how much it got."""

    def __init__(self) -> None:
        self.received = 0
        self.disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.received).encode()})


class Client:
    """The client side of one ASGI exchange: a body in chunks, pulled one at a time, and what was sent back."""

    def __init__(self, chunks: int, declared: int | None = None) -> None:
        self.pending = [{"type": "http.request", "body": b"x" * CHUNK, "more_body": True} for _ in range(chunks)]
        self.pending[-1]["more_body"] = False
        self.pulled = 0
        self.sent: list[Message] = []
        headers = [] if declared is None else [(b"content-length", str(declared).encode())]
        self.scope: Scope = {"type": "http", "method": "POST", "path": "/upload", "headers": headers}

    async def receive(self) -> Message:
        self.pulled += 1
        return self.pending.pop(0) if self.pending else {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def error(self) -> dict[str, str]:
        error: dict[str, str] = json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))["error"]
        return error


async def test_a_streamed_body_is_cut_at_the_limit_and_answered_413_at_once() -> None:
    app = BodyReader()
    client = Client(chunks=100)
    await RequestSizeLimits(app, {"/upload": LIMIT})(client.scope, client.receive, client.send)
    assert client.status == 413
    assert client.error["code"] == "upload_too_large"
    assert "1.0 kB" in client.error["message"]
    assert app.received <= LIMIT, "the application never gets more than the limit"
    assert app.disconnected
    assert client.pulled == LIMIT // CHUNK + 1, "nothing is read past the chunk that passed the limit"
    assert len(client.sent) == 2, "the application's own answer after the cut is not sent"


async def test_a_body_within_the_limit_passes_whole() -> None:
    app = BodyReader()
    client = Client(chunks=LIMIT // CHUNK)
    await RequestSizeLimits(app, {"/upload": LIMIT})(client.scope, client.receive, client.send)
    assert client.status == 200
    assert app.received == LIMIT // CHUNK * CHUNK


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    app = BodyReader()
    client = Client(chunks=1, declared=LIMIT + 1)
    await RequestSizeLimits(app, {"/upload": LIMIT})(client.scope, client.receive, client.send)
    assert client.status == 413
    assert client.pulled == 0 and app.received == 0


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/sessions", 10),
        ("/api/sessions/abc/viewers", 20),
        ("/api/sessions/abc/viewers/", 20),
        ("/api/sessions/abc", 99),
        ("/api/sessions/abc/viewers/def", 99),
        ("/elsewhere", 99),
    ],
)
def test_routes_are_matched_segment_by_segment(path: str, limit: int) -> None:
    limits = RequestSizeLimits(
        BodyReader(), {"/api/sessions": 10, "/api/sessions/{session_id}/viewers": 20}, default_body_limit=99
    )
    assert limits.body_limit(path) == limit


@pytest.fixture
def live_url(settings: ServerSettings) -> Iterator[str]:
    limited = replace(settings, max_upload_bytes=256 * 1024, max_ws_message_bytes=64 * 1024)
    with serve_in_thread(create_app(limited, renderer=LoudnessRenderer())) as url:
        yield url


def multipart(boundary: str, filename: str, data: bytes) -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


def endless_upload(boundary: str) -> Iterator[bytes]:
    """A multipart upload with no declared length: its head, then 4 MB of file in 64 kB chunks."""
    yield multipart(boundary, "huge.png", b"")[: -len(f"\r\n--{boundary}--\r\n")]
    for _ in range(64):
        yield b"\x89" * 65536


def test_a_chunked_upload_over_the_limit_gets_413_and_the_server_keeps_serving(
    live_url: str, settings: ServerSettings
) -> None:
    boundary = "limits-test-boundary"
    content_type = {"content-type": f"multipart/form-data; boundary={boundary}"}
    buffer = io.BytesIO()
    Image.open(default_portrait_path()).convert("RGB").save(buffer, format="JPEG")
    with httpx2.Client(base_url=live_url, timeout=30) as http:
        refused = http.post("/api/avatars", content=endless_upload(boundary), headers=content_type)
        health = http.get("/healthz")
        accepted = http.post(
            "/api/avatars", content=multipart(boundary, "fine.jpg", buffer.getvalue()), headers=content_type
        )
    assert "content-length" not in refused.request.headers, "the upload was sent chunked"
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "upload_too_large"
    assert health.status_code == 200
    assert accepted.status_code == 201, accepted.text
    assert sorted(path.name for path in Path(settings.avatar_dir).iterdir()) == ["fine.png"], (
        "nothing of the refused upload is kept"
    )


async def test_an_oversized_websocket_message_closes_with_1009_and_others_go_on(live_url: str) -> None:
    ws_url = live_url.replace("http://", "ws://") + "/api/ws"
    async with connect(ws_url) as oversized:
        await oversized.send(start_message(Start(PROTOCOL_VERSION, sample_rate=16_000)))
        assert json.loads(await oversized.recv())["type"] == "started"
        await oversized.send(b"\x00\x00" * (32 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(CLOSE_WAIT):
                while True:
                    await oversized.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (MESSAGE_TOO_BIG, MESSAGE_TOO_BIG_REASON)
    async with connect(ws_url) as fine:
        await fine.send(start_message(Start(PROTOCOL_VERSION, sample_rate=16_000)))
        assert json.loads(await fine.recv())["type"] == "started"
        await fine.send(b"\x00\x00" * (32 * 1024))
