"""The bot protocol fed anything: control messages to the parser, and whole scripts of text and binary messages
(odd PCM lengths, absurd starts) through a real socket to the app. The parser answers with a message or a
`ProtocolError`; the server with events and, if it closes, a 1000/1001/1008 or 4xxx code; never a crash, a 1011
or a logged exception, and no session outlives its socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from server.bot_protocol import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    Close,
    Error,
    Flush,
    Interrupt,
    ProtocolError,
    Start,
    Started,
    parse_control,
    parse_event,
)
from server.settings import ServerSettings
from tests.server.fake_renderer import LoudnessRenderer
from tests.server.fuzzing import LogWatcher, app_client, assert_no_sessions, examples, json_values, tried
from tests.server.live_server import serve_in_thread
from tests.server.test_bot_api import raw_events, raw_socket
from tests.server.test_webrtc_session import wait_until_no_sessions

absurd_numbers = st.sampled_from([0, 1, -1, -16_000, 10**9, 2**63, 16_000.0, 0.5, float("inf"), "16000", True, None])
start_bodies = st.fixed_dictionaries(
    {"type": st.just("start")},
    optional={
        "protocol": st.just(1) | json_values,
        "sample_rate": st.integers(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE) | absurd_numbers | json_values,
        "output": st.sampled_from(["frames", "viewer", "", "FRAMES", "hologram"]) | json_values,
        "jpeg_quality": st.integers(-5, 105) | absurd_numbers,
        "send_audio": st.booleans() | json_values,
        "avatar": st.none() | st.just("default") | st.text(max_size=30) | json_values,
    },
)
typed_bodies = st.fixed_dictionaries(
    {"type": st.sampled_from(["flush", "interrupt", "close", "start", "Start", "", "stats"]) | json_values},
    optional={"extra": json_values},
)
control_texts = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    start_bodies.map(json.dumps),
    typed_bodies.map(json.dumps),
)


@examples(200)
@given(text=control_texts)
@example(text="[" * 100_000)
@example(text='{"type": "start", "protocol": 1, "sample_rate": ' + "9" * 5000 + "}")
@example(text='{"type": "start", "protocol": 1, "sample_rate": 1e400}')
@example(text='{"type": "start", "protocol": 1, "sample_rate": NaN}')
@example(text="\x00" * 64)
def test_a_control_message_parses_or_is_refused_with_a_protocol_error(text: str) -> None:
    tried("bot control message → parse_control")
    try:
        message = parse_control(text)
    except ProtocolError as refusal:
        assert refusal.code and refusal.message
        assert refusal.close_code is None or 4000 <= refusal.close_code < 5000
    else:
        assert isinstance(message, Start | Flush | Interrupt | Close)
        if isinstance(message, Start):
            assert MIN_SAMPLE_RATE <= message.sample_rate <= MAX_SAMPLE_RATE
            assert 1 <= message.jpeg_quality <= 100


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("fuzz-bots")) as test_client:
        yield test_client


valid_start = st.builds(
    lambda rate, output: json.dumps({"type": "start", "protocol": 1, "sample_rate": rate, "output": output}),
    st.sampled_from([MIN_SAMPLE_RATE, 16_000, 24_000, 44_100, MAX_SAMPLE_RATE]),
    st.sampled_from(["frames", "viewer"]),
)
pcm_messages = st.binary(max_size=4801)
client_messages = st.one_of(valid_start, control_texts, pcm_messages)
scripts = st.lists(client_messages, max_size=8)


@examples(60)
@given(script=scripts)
@example(script=[json.dumps({"type": "start", "protocol": 1, "sample_rate": 16_000}), b"\x00", b"\x00" * 3])
@example(script=[json.dumps({"type": "start", "protocol": 1}), "[" * 100_000, '{"type": "flush"}'])
@example(script=["[" * 100_000])
def test_any_script_on_the_socket_gets_events_and_a_proper_close_and_leaks_no_session(
    client: TestClient, error_logs: LogWatcher, script: list[str | bytes]
) -> None:
    tried("bot socket script (WS /api/ws)")
    received: list[Any] = []
    with client.websocket_connect("/api/ws") as socket:
        for message in [*script, json.dumps({"type": "close"})]:
            if isinstance(message, bytes):
                socket.send_bytes(message)
            else:
                socket.send_text(message)
        while (message := socket.receive())["type"] != "websocket.close":
            received.append(message)
    close_code = message["code"]
    assert close_code in (1000, 1001, 1008) or 4000 <= close_code < 5000, message
    for frame in received:
        if frame.get("text") is not None:
            event = parse_event(frame["text"])
            if isinstance(event, Error):
                assert event.code and event.message
    error_logs.assert_quiet()
    assert_no_sessions(client)


@pytest.mark.parametrize("sample_rate", [0, 1, -16_000, 10**9, 16_000.5, "16000", None, True])
def test_an_absurd_sample_rate_is_refused_with_4400(client: TestClient, sample_rate: object) -> None:
    with client.websocket_connect("/api/ws") as socket:
        socket.send_text(json.dumps({"type": "start", "protocol": 1, "sample_rate": sample_rate}))
        refusal = parse_event(socket.receive_text())
        closing = socket.receive()
    assert isinstance(refusal, Error) and refusal.code == "invalid_start" and "sample_rate" in refusal.message
    assert (closing["code"], closing["reason"]) == (4400, "invalid_start")
    assert_no_sessions(client)


async def test_a_message_over_the_size_limit_closes_with_1009_and_leaks_no_session(tmp_path: Path) -> None:
    """Through a real server: uvicorn refuses a WebSocket message over 16 MiB before it is buffered whole."""
    settings = ServerSettings(avatar_dir=tmp_path / "avatars", ice_host_addresses=("127.0.0.1",), media_timeout=5.0)
    with serve_in_thread(create_app(settings, renderer=LoudnessRenderer())) as url:
        with pytest.raises(ConnectionClosed) as closed:
            async with raw_socket(url) as socket:
                await socket.send(json.dumps({"type": "start", "protocol": 1, "output": "viewer"}))
                started = parse_event(str(await socket.recv()))
                await socket.send(b"\x00" * (17 * 2**20))
                await raw_events(socket, None)
        async with httpx2.AsyncClient(base_url=url) as http:
            await wait_until_no_sessions(http)
    assert isinstance(started, Started)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
