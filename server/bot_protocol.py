"""The bot WebSocket protocol, version 1 (`WS /api/ws`): typed messages, parsed and written at the edge.

Client → server text messages are JSON objects with a `type`: `start`, `flush`, `interrupt`, `close`; binary
messages are PCM16 little-endian mono at the start's `sample_rate`. Server → client text messages are events
(`started`, `speech_started`, `speech_ended`, `interrupted`, `stats`, `error`, `closed`); binary messages are media,
each a 16-byte little-endian header (`MediaHeader`) and the payload.

Only this module knows the wire format: the server and `server.bot_client` both build and read messages through
it, so the two cannot drift apart. It imports nothing heavier than the standard library.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Literal

PROTOCOL_VERSION = 1
DEFAULT_SAMPLE_RATE = 24_000
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
DEFAULT_JPEG_QUALITY = 80

OutputMode = Literal["frames", "viewer"]
OUTPUT_MODES: tuple[OutputMode, ...] = ("frames", "viewer")


class CloseCode(IntEnum):
    """WebSocket close codes the server uses; the close reason repeats the error code (see the README's table)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    INVALID_START = 4400
    UNAUTHORIZED = 4401
    UNKNOWN_AVATAR = 4404
    START_TIMEOUT = 4408
    UNSUPPORTED_PROTOCOL = 4426
    SERVER_FULL = 4503


class ProtocolError(ValueError):
    """A message the server refuses: `code` for programs, `message` for people. With a `close_code` the refusal
    ends the connection; without, the session goes on."""

    def __init__(self, code: str, message: str, close_code: CloseCode | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


# Client → server.


@dataclass(frozen=True, slots=True)
class Start:
    protocol: int
    avatar: str | None = None
    """None: the server's default avatar."""
    sample_rate: int = DEFAULT_SAMPLE_RATE
    output: OutputMode = "frames"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    send_audio: bool = True


@dataclass(frozen=True, slots=True)
class Flush:
    """End of utterance: the audio sent so far is all there is for now."""


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Barge-in: drop everything queued and go idle now."""


@dataclass(frozen=True, slots=True)
class Close:
    """End the session."""


ControlMessage = Start | Flush | Interrupt | Close
_CONTROL_TYPES: dict[str, type[Flush | Interrupt | Close]] = {"flush": Flush, "interrupt": Interrupt, "close": Close}


def parse_control(text: str) -> ControlMessage:
    """A client's text message, checked; `ProtocolError` says what is wrong with it. Fields a message does not
    define are ignored, so a newer client's additions do not break an older server."""
    try:
        body = json.loads(text)
    except ValueError as error:
        raise ProtocolError("malformed_json", f"the text message is not valid JSON: {error}") from error
    except RecursionError as error:
        # Python's decoder recurses once per level: `[[[[...` a few thousand deep would crash the receiver.
        raise ProtocolError("malformed_json", "the text message nests JSON too deeply") from error
    if not isinstance(body, dict):
        raise ProtocolError("malformed_message", "a text message must be a JSON object with a 'type'")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("malformed_message", "a text message must have a string 'type'")
    if kind == "start":
        return _parse_start(body)
    control = _CONTROL_TYPES.get(kind)
    if control is None:
        known = ", ".join(["start", *_CONTROL_TYPES])
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}; the types are {known}")
    return control()


def _parse_start(body: dict[str, Any]) -> Start:
    protocol = body.get("protocol")
    if protocol != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_protocol",
            f"this server speaks protocol {PROTOCOL_VERSION}; the start asked for {protocol!r}",
            CloseCode.UNSUPPORTED_PROTOCOL,
        )
    avatar = _field(body, "avatar", str, None)
    sample_rate = _field(body, "sample_rate", int, DEFAULT_SAMPLE_RATE)
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise _invalid_start(f"sample_rate must be {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, not {sample_rate}")
    output = _field(body, "output", str, "frames")
    if output not in OUTPUT_MODES:
        raise _invalid_start(f"output must be one of {', '.join(OUTPUT_MODES)}, not {output!r}")
    jpeg_quality = _field(body, "jpeg_quality", int, DEFAULT_JPEG_QUALITY)
    if not 1 <= jpeg_quality <= 100:
        raise _invalid_start(f"jpeg_quality must be between 1 and 100, not {jpeg_quality}")
    send_audio = _field(body, "send_audio", bool, True)
    mode: OutputMode = "frames" if output == "frames" else "viewer"
    return Start(PROTOCOL_VERSION, avatar, sample_rate, mode, jpeg_quality, send_audio)


_KIND_NAMES = {bool: "true or false", int: "an integer", str: "a string"}


def _field(body: dict[str, Any], name: str, kind: type[Any], default: Any) -> Any:
    value = body.get(name, default)
    if value is None and default is None:
        return None
    # In Python, True is an int: a JSON boolean must not pass for a number.
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise _invalid_start(f"{name} must be {_KIND_NAMES[kind]}, not {value!r}")
    return value


def _invalid_start(message: str) -> ProtocolError:
    return ProtocolError("invalid_start", message, CloseCode.INVALID_START)


def start_message(start: Start) -> str:
    """The JSON a client sends to open a session."""
    body = {"type": "start", **asdict(start)}
    if start.avatar is None:
        del body["avatar"]
    return json.dumps(body)


def control_message(message: Flush | Interrupt | Close) -> str:
    kind = next(name for name, control in _CONTROL_TYPES.items() if isinstance(message, control))
    return json.dumps({"type": kind})


# Server → client events.


@dataclass(frozen=True, slots=True)
class Started:
    session_id: str
    fps: float
    width: int
    height: int
    playout_delay: float
    """Seconds between audio reaching the server in time and its frame going out."""
    viewer_url: str
    type: Literal["started"] = field(default="started", init=False)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The first frame of the avatar speaking went out; `pts` is its media time."""

    pts: float
    type: Literal["speech_started"] = field(default="speech_started", init=False)


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The first frame of the avatar at rest after speaking went out."""

    pts: float
    type: Literal["speech_ended"] = field(default="speech_ended", init=False)


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Everything queued was dropped; frames from `pts` on show the avatar at rest."""

    pts: float
    type: Literal["interrupted"] = field(default="interrupted", init=False)


@dataclass(frozen=True, slots=True)
class Stats:
    """Sent every second: how the session is keeping up. Drops are the slow-reader policy's (see the README)."""

    frames_sent: int
    """Frame slots played out on the session's clock."""
    frames_late: int
    """Rendered frames never shown: late, or dropped by an interrupt."""
    frames_repeated: int
    video_dropped: int
    """Video messages dropped because this client read slower than real time."""
    audio_dropped: int
    send_backlog: float
    """Seconds of media waiting to be written to this client."""
    queued_speech: float
    """Seconds of the bot's audio received but not yet played out."""
    viewers: int
    type: Literal["stats"] = field(default="stats", init=False)


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str
    retry_after: int | None = None
    """Seconds after which a refused session may be asked for again (sent only with admission refusals)."""
    type: Literal["error"] = field(default="error", init=False)


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str
    type: Literal["closed"] = field(default="closed", init=False)


Event = Started | SpeechStarted | SpeechEnded | Interrupted | Stats | Error | Closed
_EVENT_TYPES: dict[str, type[Event]] = {
    "started": Started,
    "speech_started": SpeechStarted,
    "speech_ended": SpeechEnded,
    "interrupted": Interrupted,
    "stats": Stats,
    "error": Error,
    "closed": Closed,
}


def event_message(event: Event) -> str:
    body = asdict(event)
    if isinstance(event, Error) and event.retry_after is None:
        del body["retry_after"]
    return json.dumps({"type": body.pop("type"), **body})


def parse_event(text: str) -> Event:
    """A server event, for clients; `ValueError` for anything else."""
    body = json.loads(text)
    kind = _EVENT_TYPES.get(body.pop("type", None)) if isinstance(body, dict) else None
    if kind is None:
        raise ValueError(f"not a protocol {PROTOCOL_VERSION} event: {text[:200]}")
    return kind(**body)


# Media.


class MediaKind(IntEnum):
    VIDEO = 1
    """A JPEG image."""
    AUDIO = 2
    """PCM16 little-endian mono at the start's sample rate."""


SPEAKING_FLAG = 0x01
_HEADER = struct.Struct("<BBxxId")
HEADER_SIZE = _HEADER.size  # 16


@dataclass(frozen=True, slots=True)
class MediaHeader:
    kind: MediaKind
    speaking: bool
    """The avatar is speaking in this frame (for audio: in the frame it plays with)."""
    number: int
    """The frame index for video, the sequence number for audio."""
    pts: float
    """Seconds of media time; a frame and the audio with the same pts are played together."""

    def pack(self, payload: bytes) -> bytes:
        flags = SPEAKING_FLAG if self.speaking else 0
        return _HEADER.pack(self.kind, flags, self.number % 2**32, self.pts) + payload


def unpack_media(message: bytes) -> tuple[MediaHeader, bytes]:
    if len(message) < HEADER_SIZE:
        raise ValueError(f"a media message is at least {HEADER_SIZE} bytes, got {len(message)}")
    kind, flags, number, pts = _HEADER.unpack_from(message)
    return MediaHeader(MediaKind(kind), bool(flags & SPEAKING_FLAG), number, pts), message[HEADER_SIZE:]
