"""The bot WebSocket API end to end: a real uvicorn server on loopback with the lite renderer, driven by
`server.bot_client` (or a raw socket, to send what a correct client never would)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket as socket_module
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx2
import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.mouth_probe import MouthProbe
from server.app import create_app
from server.bot_client import AudioMessage, BotClient, BotRefused, Received, VideoMessage, connect_bot
from server.bot_protocol import (
    Error,
    Event,
    Interrupted,
    MediaKind,
    SpeechEnded,
    SpeechStarted,
    Started,
    Stats,
    parse_event,
    unpack_media,
)
from server.settings import ServerSettings
from streaming.lite.renderer import LiteRenderer
from tests.server.live_server import serve_in_thread
from tests.server.loopback_call import LoopbackCall
from tests.server.test_webrtc_session import metric, wait_until_no_sessions
from tests.streaming.signals import spoken

RATE = 24_000
FPS = 25.0
PHRASE = "Hello there. My name is Eileen, and I fly to space."
OPEN = 0.03
"""Share of dark pixels in the mouth box above which the lite mouth is open (closed: about 0.01)."""


@pytest.fixture(scope="module")
def phrase() -> npt.NDArray[np.int16]:
    """About three seconds of speech, PCM16 at 24 kHz, as a text-to-speech engine would hand it to a bot."""
    return np.round(np.clip(spoken(PHRASE, RATE), -1, 1) * 32767).astype(np.int16)


def bot_settings(directory: Path, **overrides: object) -> ServerSettings:
    settings = ServerSettings(avatar_dir=directory / "avatars", ice_host_addresses=("127.0.0.1",), media_timeout=5.0)
    return replace(settings, **overrides)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, lite_renderer: LiteRenderer) -> Iterator[str]:
    with serve_in_thread(create_app(bot_settings(tmp_path_factory.mktemp("bots")), renderer=lite_renderer)) as url:
        yield url


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/api/ws"


async def send_utterance(bot: BotClient, pcm: npt.NDArray[np.int16], chunk: float = 0.1) -> None:
    """All at once, in `chunk`-second messages: a text-to-speech engine is faster than real time."""
    step = round(chunk * RATE)
    for offset in range(0, len(pcm), step):
        await bot.send_audio(pcm[offset : offset + step])
    await bot.flush()


@dataclass
class Reception:
    """Everything a bot received, with the arrival time of each message."""

    messages: list[tuple[float, Received]] = field(default_factory=list)

    def videos(self) -> list[VideoMessage]:
        return [message for _, message in self.messages if isinstance(message, VideoMessage)]

    def audios(self) -> list[AudioMessage]:
        return [message for _, message in self.messages if isinstance(message, AudioMessage)]

    def events(self, kind: type[Event] | None = None) -> list[Event]:
        return [
            message
            for _, message in self.messages
            if not isinstance(message, VideoMessage | AudioMessage) and (kind is None or isinstance(message, kind))
        ]

    async def until(self, bot: BotClient, done: type[Event] | None, seconds: float, *, after: int = 0) -> None:
        """Receive until an event of type `done` arrives (beyond message `after`), or for `seconds` when None."""
        try:
            async with asyncio.timeout(seconds):
                async for message in bot:
                    self.messages.append((time.monotonic(), message))
                    if done is not None and isinstance(message, done) and len(self.messages) > after:
                        return
        except TimeoutError:
            if done is None:
                return
            raise AssertionError(f"no {done.__name__} within {seconds} s") from None
        if done is not None:
            raise AssertionError(f"the connection closed before {done.__name__}")


async def test_frames_mode_round_trip_paces_a_burst_and_sends_back_the_voice_with_its_frames(
    server_url: str, phrase: npt.NDArray[np.int16], mouth_probe: MouthProbe
) -> None:
    reception = Reception()
    async with connect_bot(ws_url(server_url), sample_rate=RATE) as bot:
        started = bot.started
        sent_at = time.monotonic()
        await send_utterance(bot, phrase)
        await reception.until(bot, SpeechStarted, 20.0)
        await reception.until(bot, None, len(phrase) / RATE + 1.0)
    assert bot.close_code == 1000

    assert (started.fps, started.width, started.height) == (FPS, 512, 512)
    assert started.viewer_url == f"{server_url}/watch/{started.session_id}"
    assert 0 < started.playout_delay < 0.5
    videos, audios = reception.videos(), reception.audios()
    assert [video.index for video in videos] == list(range(videos[0].index, videos[0].index + len(videos)))
    assert [audio.pts for audio in audios] == [video.pts for video in videos], "each frame with its audio"
    assert all(len(audio.samples()) == RATE / FPS for audio in audios)
    assert all(video.image().shape == (512, 512, 3) for video in videos[:3])

    # The voice comes back exactly as sent, on the frames' timeline.
    voice = np.concatenate([audio.samples() for audio in audios])
    first_loud = int(np.argmax(np.abs(phrase) > 300))
    start = int(np.argmax(np.abs(voice) > 300)) - first_loud
    assert np.array_equal(voice[start : start + len(phrase)], phrase)

    # Paced: sent in a burst, played out in real time.
    arrivals = [arrived for arrived, message in reception.messages if isinstance(message, VideoMessage)]
    spoken_seconds = len(phrase) / RATE
    assert arrivals[-1] - sent_at > 0.8 * spoken_seconds

    # Lips on the voice: speaking frames carry the loud audio and an open mouth, the events mark them.
    speaking = [video for video in videos if video.speaking]
    assert len(speaking) > 0.5 * spoken_seconds * FPS
    changes = [
        (SpeechStarted if video.speaking else SpeechEnded, video.pts)
        for before, video in itertools.pairwise(videos)
        if video.speaking != before.speaking
    ]
    events = [
        (type(event), event.pts) for event in reception.events() if isinstance(event, SpeechStarted | SpeechEnded)
    ]
    assert events == changes, "speech events mark the frames where the speaking flag changes"
    openness = np.array([mouth_probe.openness(mouth_probe.crop(video.image())) for video in videos])
    loudness = np.array([float(np.sqrt(np.mean(audio.samples().astype(np.float64) ** 2))) for audio in audios])
    assert openness[[video.speaking for video in videos]].max() > OPEN
    assert openness[: videos.index(speaking[0])].max() < OPEN, "the mouth rests before the voice"
    lags = range(-3, 4)
    correlations = [np.corrcoef(np.roll(loudness, lag)[3:-3], openness[3:-3])[0, 1] for lag in lags]
    best = lags[int(np.argmax(correlations))]
    assert abs(best) <= 1, f"the mouth follows the audio sent with it (best lag {best} frames: {correlations})"
    assert max(correlations) > 0.5
    stats = reception.events(Stats)
    assert stats and all(isinstance(event, Stats) and event.video_dropped == 0 for event in stats)


async def test_viewer_mode_sends_only_events_while_viewers_come_and_go(
    server_url: str, phrase: npt.NDArray[np.int16]
) -> None:
    reception = Reception()
    async with (
        httpx2.AsyncClient(base_url=server_url) as http,
        connect_bot(ws_url(server_url), sample_rate=RATE, output="viewer") as bot,
    ):
        session_id = bot.started.session_id
        first, leaving = LoopbackCall(http, np.zeros(0, np.float32)), LoopbackCall(http, np.zeros(0, np.float32))
        for viewer in (first, leaving):
            assert (await viewer.watch(session_id)).status_code == 201
        for viewer in (first, leaving):
            await viewer.wait_for_frames(10)
        await send_utterance(bot, phrase)
        await reception.until(bot, SpeechStarted, 20.0)

        assert (await http.delete(f"/api/sessions/{session_id}/viewers/{leaving.viewer_id}")).status_code == 204
        await leaving.close()
        late = LoopbackCall(http, np.zeros(0, np.float32))
        assert (await late.watch(session_id)).status_code == 201
        before = len(first.frames)
        await late.wait_for_frames(10)
        await first.wait_for_frames(before + 10)
        listed = (await http.get("/api/sessions")).json()["sessions"]
        await reception.until(bot, SpeechEnded, 20.0)
        await reception.until(bot, Stats, 5.0, after=len(reception.messages))
        unknown = await http.delete(f"/api/sessions/{session_id}/viewers/{leaving.viewer_id}")
        metrics = (await http.get("/metrics")).text
        for viewer in (first, late):
            await viewer.close()

    assert not reception.videos() and not reception.audios(), "viewer mode sends no media to the bot"
    assert [(item["transport"], item["viewers"]) for item in listed] == [("websocket", 2)]
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_viewer"
    last_stats = reception.events(Stats)[-1]
    assert isinstance(last_stats, Stats) and last_stats.viewers == 2
    for viewer in (first, late):
        assert viewer.echo_frames > 0, "viewers hear the voice"
        assert {(frame.width, frame.height) for frame in viewer.frames} == {(512, 512)}
    assert metric(metrics, "echolive_viewers_active") == 2


async def raw_events(socket: ClientConnection, count: int | None) -> list[Event]:
    """The next `count` events (None: all until the connection closes), skipping media and stats."""
    events: list[Event] = []
    async with asyncio.timeout(10):
        while len(events) != count:
            try:
                message = await socket.recv()
            except ConnectionClosed:
                break
            if isinstance(message, str) and not isinstance(event := parse_event(message), Stats):
                events.append(event)
    return events


def raw_socket(base_url: str) -> connect:
    return connect(ws_url(base_url), compression=None, proxy=None, max_size=2**24)


def error_codes(events: list[Event]) -> list[str]:
    return [event.code if isinstance(event, Error) else event.type for event in events]


async def test_each_malformed_message_gets_an_error_event_and_the_session_goes_on(
    server_url: str, phrase: npt.NDArray[np.int16]
) -> None:
    async with raw_socket(server_url) as socket:
        for message in [b"\x00\x01", "not json", '{"type": "flush"}', '{"type": "dance"}', "[1, 2]"]:
            await socket.send(message)
        before_start = await raw_events(socket, 5)
        await socket.send(json.dumps({"type": "start", "protocol": 1, "sample_rate": RATE, "output": "viewer"}))
        (started,) = await raw_events(socket, 1)
        for message in [
            '{"type": "dance"}',
            "{not json",
            b"\x01\x02\x03",
            json.dumps({"type": "start", "protocol": 1}),
            '{"no_type": 1}',
        ]:
            await socket.send(message)
        during = await raw_events(socket, 5)
        await socket.send(phrase.astype("<i2").tobytes())
        await socket.send('{"type": "flush"}')
        (speech,) = await raw_events(socket, 1)
        await socket.send('{"type": "close"}')
        rest = await raw_events(socket, None)
        async with httpx2.AsyncClient(base_url=server_url) as http:
            metrics = (await http.get("/metrics")).text

    assert error_codes(before_start) == [
        "not_started",
        "malformed_json",
        "not_started",
        "unknown_type",
        "malformed_message",
    ]
    assert isinstance(started, Started)
    assert error_codes(during) == [
        "unknown_type",
        "malformed_json",
        "odd_pcm_length",
        "already_started",
        "malformed_message",
    ]
    assert all(isinstance(event, Error) and event.message for event in before_start + during)
    assert isinstance(speech, SpeechStarted), "the session carried on: the avatar spoke"
    assert rest[-1].type == "closed" and not any(isinstance(event, Error) for event in rest)
    assert (socket.close_code, socket.close_reason) == (1000, "client_closed")
    assert metric(metrics, 'echolive_protocol_errors_total{code="odd_pcm_length"}') >= 1


@pytest.mark.parametrize(
    ("start", "code", "close_code"),
    [
        ({"protocol": 2}, "unsupported_protocol", 4426),
        ({"protocol": 1, "sample_rate": 1000}, "invalid_start", 4400),
        ({"protocol": 1, "output": "hologram"}, "invalid_start", 4400),
        ({"protocol": 1, "avatar": "nobody"}, "unknown_avatar", 4404),
    ],
)
async def test_a_start_that_cannot_be_honoured_is_refused_with_a_close_code_and_reason(
    server_url: str, start: dict[str, object], code: str, close_code: int
) -> None:
    async with raw_socket(server_url) as socket:
        await socket.send(json.dumps({"type": "start", **start}))
        events = await raw_events(socket, None)
    assert error_codes(events) == [code]
    assert (socket.close_code, socket.close_reason) == (close_code, code)


async def test_the_client_raises_the_refusal(server_url: str) -> None:
    with pytest.raises(BotRefused) as refused:
        async with connect_bot(ws_url(server_url), avatar="nobody"):
            raise AssertionError("the start should have been refused")
    assert (refused.value.code, refused.value.close_code) == ("unknown_avatar", 4404)
    assert "nobody" in refused.value.message


async def test_bots_and_callers_share_one_admission_pool(
    tmp_path: Path, lite_renderer: LiteRenderer, speech: npt.NDArray[np.float32]
) -> None:
    with serve_in_thread(create_app(bot_settings(tmp_path, max_sessions=1), renderer=lite_renderer)) as url:
        async with httpx2.AsyncClient(base_url=url) as http:
            async with connect_bot(ws_url(url), output="viewer"):
                caller = LoopbackCall(http, speech)
                refused_call = await caller.start()
                await caller.close()
                async with raw_socket(url) as socket:
                    await socket.send(json.dumps({"type": "start", "protocol": 1}))
                    refused_bot = await raw_events(socket, None)
            await wait_until_no_sessions(http)
            caller = LoopbackCall(http, speech)
            admitted = await caller.start()
            await caller.close()
            metrics = (await http.get("/metrics")).text

    assert refused_call.status_code == 503 and refused_call.json()["error"]["code"] == "server_full"
    assert error_codes(refused_bot) == ["server_full"]
    assert (socket.close_code, socket.close_reason) == (4503, "server_full")
    assert admitted.status_code == 201, "the bot's slot is free again once it closed"
    assert metric(metrics, "echolive_sessions_rejected_total") == 2


async def test_interrupt_mid_utterance_drops_the_rest_and_the_avatar_goes_idle(
    server_url: str, phrase: npt.NDArray[np.int16]
) -> None:
    reception = Reception()
    async with connect_bot(ws_url(server_url), sample_rate=RATE) as bot:
        await send_utterance(bot, np.concatenate([phrase, phrase]))
        await reception.until(bot, SpeechStarted, 20.0)
        await reception.until(bot, None, 1.0)
        await bot.interrupt()
        interrupted_after = len(reception.messages)
        await reception.until(bot, Interrupted, 5.0)
        await reception.until(bot, SpeechEnded, 5.0)
        await reception.until(bot, None, 1.5)
        after_interrupt = Reception(reception.messages[interrupted_after:])
        await send_utterance(bot, phrase)
        resumed = Reception()
        await resumed.until(bot, SpeechStarted, 20.0)
        async with httpx2.AsyncClient(base_url=server_url) as http:
            metrics = (await http.get("/metrics")).text

    (interrupted,) = reception.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    videos = after_interrupt.videos()
    first_idle = next(position for position, video in enumerate(videos) if not video.speaking)
    assert first_idle <= 6, "at most a few frames already on their way still speak"
    assert not any(video.speaking for video in videos[first_idle:]), "nothing of the utterance is drawn after it"
    assert len(videos) - first_idle >= 30
    quiet = [audio for audio in after_interrupt.audios() if audio.pts >= interrupted.pts]
    assert quiet and not any(audio.samples().any() for audio in quiet), "the rest of the voice was dropped"
    spoken_frames = sum(video.speaking for video in reception.videos())
    assert spoken_frames < 0.6 * 2 * len(phrase) / RATE * FPS, "most of the two sentences never played"
    assert metric(metrics, "echolive_interrupts_total") >= 1


def stats_with_drops(received: list[str | bytes]) -> list[Stats]:
    events = [parse_event(message) for message in received if isinstance(message, str)]
    return [event for event in events if isinstance(event, Stats) and event.video_dropped > 0]


async def test_a_slow_reader_costs_dropped_frames_counted_and_reported_not_memory(
    tmp_path: Path, lite_renderer: LiteRenderer, phrase: npt.NDArray[np.int16]
) -> None:
    with serve_in_thread(create_app(bot_settings(tmp_path), renderer=lite_renderer), send_buffer=8192) as url:
        sock = socket_module.socket()
        sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.setblocking(False)
        async with connect(
            ws_url(url), sock=sock, compression=None, proxy=None, max_size=2**24, max_queue=1, close_timeout=1
        ) as ws:
            await ws.send(json.dumps({"type": "start", "protocol": 1, "sample_rate": RATE, "jpeg_quality": 95}))
            await ws.send(np.concatenate([phrase, phrase, phrase]).astype("<i2").tobytes())
            await asyncio.sleep(4.0)  # reading nothing while the server plays four seconds out
            received: list[str | bytes] = []
            async with asyncio.timeout(20):
                while not stats_with_drops(received[-1:]):
                    received.append(await ws.recv())
                for _ in range(100):
                    received.append(await ws.recv())
            async with httpx2.AsyncClient(base_url=url) as http:
                metrics = (await http.get("/metrics")).text

    stats = stats_with_drops(received)
    media = [unpack_media(message)[0] for message in received if isinstance(message, bytes)]
    assert all(event.send_backlog <= 5.0 for event in stats), "the queue stayed bounded"
    video_numbers = [header.number for header in media if header.kind == MediaKind.VIDEO]
    audio_numbers = [header.number for header in media if header.kind == MediaKind.AUDIO]
    assert any(later - earlier > 1 for earlier, later in itertools.pairwise(video_numbers))
    assert audio_numbers == list(range(audio_numbers[0], audio_numbers[0] + len(audio_numbers))), "no voice lost"
    assert metric(metrics, 'echolive_slow_reader_dropped_total{kind="video"}') >= stats[-1].video_dropped
