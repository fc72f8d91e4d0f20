"""The slow-reader policy: a client that stops reading costs the server a bounded queue, the freshest video and an
unbroken voice; events are never dropped, and everything goes out in order."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from server.bot_protocol import Interrupted, MediaHeader, MediaKind, SpeechStarted, unpack_media
from server.bot_sender import MediaSender
from server.playout import Tick
from streaming.frames import VideoFrame

FPS = 25.0
AUDIO_PER_SLOT = 1 / FPS


class StalledClient:
    """A socket whose writes block until the client reads again."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.received: list[str | bytes] = []
        self._arrived = asyncio.Event()

    async def send(self, message: str | bytes) -> None:
        await self.reading.wait()
        self.received.append(message)
        self._arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()


def tick(slot: int) -> Tick:
    frame = VideoFrame(image=np.full((16, 16, 3), 128, dtype=np.uint8), index=slot, pts=slot / FPS, speaking=True)
    return Tick(frame, slot, slot / FPS, repeated=False)


def play_slot(sender: MediaSender, slot: int) -> None:
    sender.send_video(tick(slot))
    header = MediaHeader(MediaKind.AUDIO, True, slot, slot / FPS)
    sender.send_audio(header, b"\x00\x00" * 960, AUDIO_PER_SLOT)


def kinds_and_numbers(received: list[str | bytes]) -> list[tuple[str, int | str]]:
    out: list[tuple[str, int | str]] = []
    for message in received:
        if isinstance(message, str):
            out.append(("event", json.loads(message)["type"]))
        else:
            header, _ = unpack_media(message)
            out.append((header.kind.name.lower(), header.number))
    return out


async def test_a_stalled_client_gets_the_newest_half_second_of_video_all_the_voice_and_every_event() -> None:
    client = StalledClient()
    drops: list[str] = []
    sender = MediaSender(client.send, fps=FPS, jpeg_quality=80, on_drop=drops.append)
    writer = asyncio.create_task(sender.run())
    sender.send_event(SpeechStarted(0.0))
    for slot in range(50):  # two seconds of media while the client reads nothing
        play_slot(sender, slot)
        if slot == 20:
            sender.send_event(Interrupted(slot / FPS))
    await asyncio.sleep(0)

    held_video = round(0.5 * FPS)  # the writer is blocked on the first event
    assert sender.video_dropped == 50 - held_video
    assert drops == ["video"] * sender.video_dropped
    assert sender.audio_dropped == 0
    assert sender.backlog == pytest.approx(2.0), "all the audio waits"

    client.reading.set()
    await client.wait_for(2 + held_video + 50)
    assert sender.backlog == 0
    writer.cancel()
    received = kinds_and_numbers(client.received)
    videos = [number for kind, number in received if kind == "video"]
    audios = [number for kind, number in received if kind == "audio"]
    events = [number for kind, number in received if kind == "event"]
    assert videos == list(range(50 - held_video, 50)), "the oldest frames went; the newest are sent"
    assert audios == list(range(50)), "the voice has no holes"
    assert events == ["speech_started", "interrupted"]
    interrupted_at = received.index(("event", "interrupted"))
    assert received[interrupted_at - 1] == ("audio", 20), "events keep their place among the media"


async def test_audio_is_bounded_too_and_loses_its_oldest() -> None:
    client = StalledClient()
    sender = MediaSender(client.send, fps=FPS, jpeg_quality=80, on_drop=lambda kind: None, max_audio_backlog=1.0)
    for slot in range(40):
        play_slot(sender, slot)
    assert sender.audio_dropped == 40 - round(1.0 / AUDIO_PER_SLOT)
    assert sender.backlog <= 1.0 + 1e-9
    events = sender.pending_events()
    assert events == [] and sender.backlog == 0
