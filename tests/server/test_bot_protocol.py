"""The bot protocol's messages, parsed and written: every refusal has its code, and media headers round-trip."""

from __future__ import annotations

import json

import pytest

from server.bot_protocol import (
    HEADER_SIZE,
    Close,
    CloseCode,
    Flush,
    Interrupt,
    MediaHeader,
    MediaKind,
    ProtocolError,
    SpeechStarted,
    Start,
    Stats,
    control_message,
    event_message,
    parse_control,
    parse_event,
    start_message,
    unpack_media,
)


def start(**fields: object) -> str:
    return json.dumps({"type": "start", "protocol": 1, **fields})


def test_a_start_with_defaults_and_with_every_field() -> None:
    assert parse_control(start()) == Start(protocol=1)
    full = Start(1, "astronaut", 48_000, "viewer", 60, False)
    assert parse_control(start_message(full)) == full
    assert parse_control(start(unknown_field=3, sample_rate=16_000)) == Start(1, sample_rate=16_000)


@pytest.mark.parametrize("message", [Flush(), Interrupt(), Close()])
def test_control_messages_round_trip(message: Flush | Interrupt | Close) -> None:
    assert parse_control(control_message(message)) == message


@pytest.mark.parametrize(
    ("text", "code", "close_code"),
    [
        ("{not json", "malformed_json", None),
        ("[1, 2]", "malformed_message", None),
        ('{"kind": "flush"}', "malformed_message", None),
        ('{"type": 7}', "malformed_message", None),
        ('{"type": "dance"}', "unknown_type", None),
        (start(protocol=2), "unsupported_protocol", CloseCode.UNSUPPORTED_PROTOCOL),
        ('{"type": "start"}', "unsupported_protocol", CloseCode.UNSUPPORTED_PROTOCOL),
        (start(sample_rate=1000), "invalid_start", CloseCode.INVALID_START),
        (start(sample_rate="24000"), "invalid_start", CloseCode.INVALID_START),
        (start(sample_rate=True), "invalid_start", CloseCode.INVALID_START),
        (start(output="hologram"), "invalid_start", CloseCode.INVALID_START),
        (start(jpeg_quality=0), "invalid_start", CloseCode.INVALID_START),
        (start(send_audio="yes"), "invalid_start", CloseCode.INVALID_START),
        (start(avatar=5), "invalid_start", CloseCode.INVALID_START),
    ],
)
def test_each_malformed_message_is_refused_with_its_code(text: str, code: str, close_code: CloseCode | None) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_control(text)
    assert refused.value.code == code
    assert refused.value.close_code == close_code
    assert refused.value.message


def test_events_round_trip() -> None:
    stats = Stats(10, 1, 2, 3, 0, 0.25, 1.5, 2)
    for event in (SpeechStarted(1.24), stats):
        text = event_message(event)
        assert json.loads(text)["type"] == event.type
        assert parse_event(text) == event
    with pytest.raises(ValueError):
        parse_event('{"type": "weather"}')


def test_media_headers_are_16_bytes_little_endian() -> None:
    header = MediaHeader(MediaKind.VIDEO, speaking=True, number=1234, pts=49.36)
    message = header.pack(b"jpeg")
    assert HEADER_SIZE == 16
    assert message[:4] == bytes([1, 1, 0, 0])
    assert int.from_bytes(message[4:8], "little") == 1234
    assert unpack_media(message) == (header, b"jpeg")
    quiet = MediaHeader(MediaKind.AUDIO, speaking=False, number=7, pts=0.0)
    assert unpack_media(quiet.pack(b""))[0] == quiet
    with pytest.raises(ValueError):
        unpack_media(b"short")
