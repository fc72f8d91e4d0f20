"""The LiveKit Agents avatar against a real server on loopback running `lite`: `EchoMimicVideoGenerator` driven
directly, then `AvatarSession` wiring it with `AvatarRunner` and `QueueAudioOutput` into an `AgentSession`, in a
fake room (LiveKit's sources, synchronizer and tracks are real; only the room's publishing is faked). A real room
is used only where `LIVEKIT_URL` is set."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("livekit.agents", reason="LiveKit Agents is not installed (pip install -e '.[livekit]')")

from livekit import api, rtc
from livekit.agents import AgentSession
from livekit.agents.voice.avatar import AudioSegmentEnd, QueueAudioOutput

from adapters import livekit_avatar
from adapters.avatar_link import AvatarLink
from adapters.livekit_avatar import AvatarSession, EchoMimicVideoGenerator, GeneratorOutput
from bench.mouth_probe import MouthProbe
from tests.adapters.voice_checks import TAIL, assert_whole_voice, chunked, seconds
from tests.server.test_bot_api import FPS, OPEN, RATE, ws_url


def audio_frames(pcm: npt.NDArray[np.int16]) -> list[rtc.AudioFrame]:
    """The agent's voice in the pieces its text-to-speech hands over, all at once."""
    return [rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)) for chunk in chunked(pcm)]


def openness(mouth_probe: MouthProbe, frame: rtc.VideoFrame) -> float:
    rgba = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 4)
    return mouth_probe.openness(mouth_probe.crop(rgba[..., :3]))


@dataclass
class Yielded:
    """Everything a generator yielded, in order."""

    items: list[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def collect(self, generator: EchoMimicVideoGenerator) -> None:
        async for item in generator:
            self.items.append(item)
            self.changed.set()

    async def until(self, done: Any, seconds: float) -> None:
        """Wait until `done(items)` holds."""
        async with asyncio.timeout(seconds):
            while not done(self.items):
                self.changed.clear()
                await self.changed.wait()

    def since(self, position: int) -> Yielded:
        return Yielded(self.items[position:])

    def ends(self) -> int:
        return sum(isinstance(item, AudioSegmentEnd) for item in self.items)

    def video(self) -> list[rtc.VideoFrame]:
        return [item for item in self.items if isinstance(item, rtc.VideoFrame)]

    def voice(self) -> npt.NDArray[np.int16]:
        pieces = [np.frombuffer(item.data, np.int16) for item in self.items if isinstance(item, rtc.AudioFrame)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


@asynccontextmanager
async def generating(server_url: str) -> AsyncIterator[tuple[EchoMimicVideoGenerator, Yielded]]:
    generator = EchoMimicVideoGenerator(await AvatarLink.open(ws_url(server_url), sample_rate=RATE))
    yielded = Yielded()
    collecting = asyncio.create_task(yielded.collect(generator))
    try:
        await yielded.until(lambda items: len(items) >= 10, 10.0)  # the session's first frames, at rest
        yield generator, yielded
    finally:
        collecting.cancel()
        await asyncio.gather(collecting, return_exceptions=True)
        await generator.aclose()


async def say(generator: EchoMimicVideoGenerator, pcm: npt.NDArray[np.int16]) -> None:
    for frame in audio_frames(pcm):
        await generator.push_audio(frame)
    await generator.push_audio(AudioSegmentEnd())


async def test_the_generator_yields_frames_and_the_voice_it_was_given_then_the_segment_end(
    server_url: str, phrase: npt.NDArray[np.int16], mouth_probe: MouthProbe
) -> None:
    async with generating(server_url) as (generator, yielded):
        assert generator.options.video_width == 512 and generator.options.video_fps == FPS
        await say(generator, phrase)
        await yielded.until(lambda items: any(isinstance(item, AudioSegmentEnd) for item in items), seconds(phrase) + 5)

    frames = yielded.video()
    assert {(frame.width, frame.height, frame.type) for frame in frames} == {(512, 512, rtc.VideoBufferType.RGBA)}
    assert len(frames) > 0.8 * FPS * seconds(phrase)
    assert_whole_voice(yielded.voice(), phrase)
    assert isinstance(yielded.items[-1], AudioSegmentEnd) and yielded.ends() == 1
    first_voice = next(position for position, item in enumerate(yielded.items) if isinstance(item, rtc.AudioFrame))
    assert isinstance(yielded.items[first_voice - 1], rtc.VideoFrame), "each piece of voice after its frame"
    assert max(openness(mouth_probe, frame) for frame in yielded.since(first_voice).video()) > OPEN
    assert max(openness(mouth_probe, frame) for frame in Yielded(yielded.items[:first_voice]).video()) < OPEN


async def test_clear_buffer_stops_the_lips_and_the_voice_and_the_next_utterance_plays_whole(
    server_url: str, phrase: npt.NDArray[np.int16], mouth_probe: MouthProbe
) -> None:
    async with generating(server_url) as (generator, yielded):
        await say(generator, np.concatenate([phrase, phrase]))
        await yielded.until(lambda items: any(isinstance(item, rtc.AudioFrame) for item in items), 10.0)
        await asyncio.sleep(1.0)
        await asyncio.wait_for(generator.clear_buffer(), timeout=5.0)
        cleared = len(yielded.items)
        await asyncio.sleep(1.0)
        await say(generator, phrase)
        await yielded.until(lambda items: any(isinstance(item, AudioSegmentEnd) for item in items), seconds(phrase) + 5)

    before, after = Yielded(yielded.items[:cleared]), yielded.since(cleared)
    assert 0 < len(before.voice()) < len(phrase), "the first utterance was cut short"
    assert_whole_voice(after.voice(), phrase)
    assert yielded.ends() == 1, "no segment end for the cleared utterance: the runner reports it interrupted"
    assert_at_rest_until_the_voice(after, mouth_probe)


def assert_at_rest_until_the_voice(after_clear: Yielded, mouth_probe: MouthProbe) -> None:
    """Nothing of the cleared speech is yielded: every frame up to the next voice is at rest (how soon the first
    comes is measured by bench/adapters_barge_in.py)."""
    next_voice = next(position for position, item in enumerate(after_clear.items) if isinstance(item, rtc.AudioFrame))
    resting = Yielded(after_clear.items[:next_voice]).video()
    assert len(resting) > 0.8 * FPS, "at rest until the next utterance, a second later"
    assert max(openness(mouth_probe, frame) for frame in resting) < OPEN, "the mouth is closed"


async def test_when_the_session_ends_playback_finished_is_still_reported_and_the_voice_goes_on(
    server_url: str, phrase: npt.NDArray[np.int16]
) -> None:
    async with generating(server_url) as (generator, yielded), httpx2.AsyncClient(base_url=server_url) as http:
        await say(generator, phrase)
        await yielded.until(lambda items: any(isinstance(item, rtc.AudioFrame) for item in items), 10.0)
        (session,) = (await http.get("/api/sessions")).json()["sessions"]
        assert (await http.delete(f"/api/sessions/{session['session_id']}")).status_code == 204
        await yielded.until(lambda items: any(isinstance(item, AudioSegmentEnd) for item in items), 5.0)
        hung_up = len(yielded.items)
        await asyncio.wait_for(generator.clear_buffer(), timeout=5.0)
        await say(generator, phrase[: RATE // 2])
        await yielded.until(lambda items: Yielded(items[hung_up:]).ends() == 1, 5.0)

    assert 0 < len(Yielded(yielded.items[:hung_up]).voice()) < len(phrase), "cut short by the hang-up"
    without_face = yielded.since(hung_up)
    assert not without_face.video() and np.array_equal(without_face.voice(), phrase[: RATE // 2])


class FakeRoom(rtc.EventEmitter[str]):
    """The part of `rtc.Room` that `AvatarRunner` uses: a connected room that takes every track published."""

    def __init__(self) -> None:
        super().__init__()
        self.local_participant = FakeParticipant()

    def isconnected(self) -> bool:
        return True


class FakeParticipant:
    def __init__(self) -> None:
        self.tracks: list[rtc.LocalAudioTrack | rtc.LocalVideoTrack] = []
        self.published = asyncio.Event()

    async def publish_track(self, track: rtc.LocalAudioTrack | rtc.LocalVideoTrack, options: object) -> FakePublication:
        self.tracks.append(track)
        self.published.set()
        return FakePublication()


class FakePublication:
    async def wait_for_subscription(self) -> None:
        return None


async def speak_through(output: QueueAudioOutput, pcm: npt.NDArray[np.int16]) -> None:
    """What `AgentSession` does with a reply: the frames, then the end of the segment."""
    for frame in audio_frames(pcm):
        await output.capture_frame(frame)
    output.flush()


class RecordingGenerator(EchoMimicVideoGenerator):
    """The generator `AvatarSession` makes, keeping what it yields and marking where the runner cleared it."""

    def __init__(self, link: AvatarLink) -> None:
        super().__init__(link)
        self.yielded = Yielded()
        self.cleared: list[int] = []

    async def clear_buffer(self) -> None:
        self.cleared.append(len(self.yielded.items))
        await super().clear_buffer()

    async def _outputs(self) -> AsyncIterator[GeneratorOutput]:
        async for item in super()._outputs():
            self.yielded.items.append(item)
            yield item


async def count_published_frames(stream: rtc.VideoStream, frames: list[rtc.VideoFrame]) -> None:
    async for event in stream:
        frames.append(event.frame)


async def test_avatar_session_wires_the_runner_into_the_agent_session_and_playback_is_always_reported(
    server_url: str, phrase: npt.NDArray[np.int16], mouth_probe: MouthProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[RecordingGenerator] = []

    def recording(link: AvatarLink) -> RecordingGenerator:
        made.append(RecordingGenerator(link))
        return made[-1]

    monkeypatch.setattr(livekit_avatar, "EchoMimicVideoGenerator", recording)
    room = FakeRoom()
    agent_session: AgentSession[None] = AgentSession()
    avatar = AvatarSession(ws_url(server_url), sample_rate=RATE)
    await avatar.start(agent_session, room=room)
    published: list[rtc.VideoFrame] = []
    try:
        output = agent_session.output.audio
        assert isinstance(output, QueueAudioOutput), "the agent speaks into the avatar"
        await asyncio.sleep(0.5)  # the session's first frames, at rest, before the agent speaks
        await speak_through(output, phrase)
        await asyncio.wait_for(room.local_participant.published.wait(), 10.0)
        (track,) = [track for track in room.local_participant.tracks if isinstance(track, rtc.LocalVideoTrack)]
        stream = rtc.VideoStream.from_track(track=track)
        counting = asyncio.create_task(count_published_frames(stream, published))
        played = await asyncio.wait_for(output.wait_for_playout(), seconds(phrase) + TAIL + 5)

        await speak_through(output, np.concatenate([phrase, phrase]))
        await asyncio.sleep(2.0)
        output.clear_buffer()
        interrupted = await asyncio.wait_for(output.wait_for_playout(), 5.0)
        await asyncio.sleep(1.0)
        await speak_through(output, phrase)
        replayed = await asyncio.wait_for(output.wait_for_playout(), seconds(phrase) + TAIL + 5)
    finally:
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
        await stream.aclose()
        await avatar.aclose()

    assert {type(track) for track in room.local_participant.tracks} == {rtc.LocalAudioTrack, rtc.LocalVideoTrack}
    assert len(published) > FPS * seconds(phrase) and {(frame.width, frame.height) for frame in published} == {
        (512, 512)
    }
    assert (played.interrupted, played.playback_position) == (False, pytest.approx(seconds(phrase)))
    assert interrupted.interrupted and 1.0 < interrupted.playback_position < seconds(phrase)
    assert (replayed.interrupted, replayed.playback_position) == (False, pytest.approx(seconds(phrase)))
    (generator,) = made
    (cleared,) = generator.cleared
    assert_at_rest_until_the_voice(generator.yielded.since(cleared), mouth_probe)


@pytest.mark.skipif(not os.environ.get("LIVEKIT_URL"), reason="LIVEKIT_URL is not set: no LiveKit server to join")
async def test_the_avatar_publishes_into_a_real_room(server_url: str, phrase: npt.NDArray[np.int16]) -> None:
    token = (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity("echomimic-avatar-test")
        .with_grants(api.VideoGrants(room_join=True, room="echomimic-avatar-test"))
        .to_jwt()
    )
    room = rtc.Room()
    await room.connect(os.environ["LIVEKIT_URL"], token)
    agent_session: AgentSession[None] = AgentSession()
    avatar = AvatarSession(ws_url(server_url), sample_rate=RATE)
    try:
        await avatar.start(agent_session, room=room)
        output = agent_session.output.audio
        assert isinstance(output, QueueAudioOutput)
        await speak_through(output, phrase)
        played = await asyncio.wait_for(output.wait_for_playout(), seconds(phrase) + 10)
        kinds = {publication.kind for publication in room.local_participant.track_publications.values()}
    finally:
        await avatar.aclose()
        await room.disconnect()
    assert (played.interrupted, played.playback_position) == (False, pytest.approx(seconds(phrase)))
    assert kinds == {rtc.TrackKind.KIND_AUDIO, rtc.TrackKind.KIND_VIDEO}
