"""EchoMimic Live as a LiveKit Agents avatar, in the in-process pattern of LiveKit's local avatar plugins.

    from adapters.livekit_avatar import AvatarSession

    await AvatarSession("ws://avatar-host:8080/api/ws").start(session, room=ctx.room)
    await session.start(agent=MyAgent(), room=ctx.room)

`AvatarSession.start` opens a session on the avatar server, points the agent's audio output at a
`QueueAudioOutput`, and runs an `AvatarRunner` that reads the agent's voice from it into
`EchoMimicVideoGenerator` and publishes what the generator yields (the portrait's frames and the voice that plays
with them, through the runner's `AVSynchronizer`) as the agent's camera and microphone tracks in the room.

`EchoMimicVideoGenerator` is the `VideoGenerator`:

- `push_audio(rtc.AudioFrame)` sends the voice to the server (which paces it), as mono at the session's rate
  (`AvatarSession` has the agent's output resampled to it already); `push_audio(AudioSegmentEnd())` ends the
  utterance;
- iterating it yields `rtc.VideoFrame`s (RGBA) all the time, at the session's frame rate, the speaking portrait
  or the portrait at rest; `rtc.AudioFrame`s of the voice, each after the frame it plays with; and an
  `AudioSegmentEnd` when an utterance has played out, always, even when part of it was lost;
- `clear_buffer()` (barge-in) never raises and returns once the interrupt is written and the runner has finished
  with the frame it took before (it counts the playback position as it hands frames on, and restarts the count
  after `clear_buffer`), at most `INTERRUPT_SEND_TIMEOUT` + `HAND_ON_WAIT` later: nothing of the interrupted
  utterances is yielded after it, neither voice nor speaking frames, and no `AudioSegmentEnd` for them (the runner
  reports them interrupted).

When the avatar session ends (the server shut down or the network went), the generator goes on: the voice it is
given is yielded as it comes, with its segment ends, so the agent keeps talking and hears its playback finish,
without the face.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import cv2
import numpy as np
from livekit import rtc
from livekit.agents import AgentSession, get_job_context
from livekit.agents.voice.avatar import (
    AudioSegmentEnd,
    AvatarOptions,
    AvatarRunner,
    QueueAudioOutput,
    VideoGenerator,
)

from adapters.avatar_link import AvatarLink
from adapters.voice_segments import Pcm16, Voice, mono_pcm
from server.bot_client import VideoMessage
from server.bot_protocol import DEFAULT_JPEG_QUALITY, DEFAULT_SAMPLE_RATE

logger = logging.getLogger(__name__)

GeneratorOutput = rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd
HAND_ON_WAIT = 0.5
"""Seconds `clear_buffer` waits for the consumer to finish with the item it took last."""


class EchoMimicVideoGenerator(VideoGenerator):
    """Made on an open `AvatarLink`; `aclose()` ends its session."""

    def __init__(self, link: AvatarLink) -> None:
        self._link = link
        self._without_avatar: asyncio.Queue[rtc.AudioFrame | AudioSegmentEnd] = asyncio.Queue()
        self._resampler: rtc.AudioResampler | None = None
        self._resampler_rate = 0
        self._handed_on = asyncio.Event()
        """The consumer has finished with the last item yielded (it asked for the next)."""
        self._handed_on.set()

    @property
    def options(self) -> AvatarOptions:
        """What the runner publishes: the session's frame size and rate, its voice's rate, mono."""
        started = self._link.started
        return AvatarOptions(started.width, started.height, started.fps, self._link.sample_rate, 1)

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if self._link.ended:
            self._without_avatar.put_nowait(frame)
        elif isinstance(frame, AudioSegmentEnd):
            if self._resampler is not None:
                await self._link.send_voice(_pcm(self._resampler.flush()))
            await self._link.end_utterance()
        else:
            await self._link.send_voice(self._session_pcm(frame))

    def _session_pcm(self, frame: rtc.AudioFrame) -> Pcm16:
        """The frame as mono at the session's rate."""
        samples = mono_pcm(bytes(frame.data), frame.num_channels)
        if frame.sample_rate == self._link.sample_rate:
            return samples
        if self._resampler is None or self._resampler_rate != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, self._link.sample_rate)
            self._resampler_rate = frame.sample_rate
        return _pcm(self._resampler.push(rtc.AudioFrame(samples.tobytes(), frame.sample_rate, 1, len(samples))))

    async def clear_buffer(self) -> None:
        while not self._without_avatar.empty():
            self._without_avatar.get_nowait()
        self._resampler = None  # its filter holds the cut speech's last samples
        await self._link.interrupt()
        with suppress(TimeoutError):
            async with asyncio.timeout(HAND_ON_WAIT):
                await self._handed_on.wait()

    def __aiter__(self) -> AsyncIterator[GeneratorOutput]:
        return self._handing_on()

    async def _handing_on(self) -> AsyncIterator[GeneratorOutput]:
        async for output in self._outputs():
            self._handed_on.clear()
            yield output
            self._handed_on.set()

    async def _outputs(self) -> AsyncIterator[GeneratorOutput]:
        async for output in self._link:
            if isinstance(output, VideoMessage):
                frame = await asyncio.to_thread(_rgba_frame, output)
                if not self._link.stale(output):
                    yield frame
            elif isinstance(output, Voice):
                yield rtc.AudioFrame(output.pcm.tobytes(), self._link.sample_rate, 1, len(output.pcm))
            else:
                yield AudioSegmentEnd()
        logger.warning("the avatar session ended: the agent's voice now plays without the face")
        while True:
            yield await self._without_avatar.get()

    async def aclose(self) -> None:
        await self._link.aclose()


class AvatarSession:
    """The avatar for one agent session; `start` it before the `AgentSession`, it closes with the job."""

    def __init__(
        self,
        url: str,
        *,
        avatar: str | None = None,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
    ) -> None:
        """`url`: the server's bot API (`ws://host:port/api/ws`); `avatar`: one of its avatars (default: the
        server's); `sample_rate`: of the voice the agent's output is resampled to and the avatar plays; `token`:
        the server's access token (default: `ECHOLIVE_TOKEN`, if set)."""
        self._url = url
        self._avatar = avatar
        self._sample_rate = sample_rate
        self._jpeg_quality = jpeg_quality
        self._token = token
        self._generator: EchoMimicVideoGenerator | None = None
        self._runner: AvatarRunner | None = None

    async def start(self, agent_session: AgentSession[Any], room: rtc.Room) -> None:
        """Open the avatar session (`BotRefused` or `OSError` when the server gives none) and route the agent's
        voice through it into the room."""
        link = await AvatarLink.open(
            self._url,
            avatar=self._avatar,
            sample_rate=self._sample_rate,
            jpeg_quality=self._jpeg_quality,
            token=self._token,
        )
        self._generator = EchoMimicVideoGenerator(link)
        voice = QueueAudioOutput(sample_rate=self._sample_rate)
        self._runner = AvatarRunner(room, audio_recv=voice, video_gen=self._generator, options=self._generator.options)
        await self._runner.start()
        agent_session.output.audio = voice
        job = get_job_context(required=False)
        if job is not None:
            job.add_shutdown_callback(self.aclose)

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.aclose()
        if self._generator is not None:
            generator, self._generator = self._generator, None
            await generator.aclose()


def _pcm(frames: list[rtc.AudioFrame]) -> Pcm16:
    return np.concatenate([np.frombuffer(frame.data, dtype=np.int16) for frame in frames] or [np.zeros(0, np.int16)])


def _rgba_frame(video: VideoMessage) -> rtc.VideoFrame:
    image = cv2.cvtColor(video.image(), cv2.COLOR_RGB2RGBA)
    height, width = image.shape[:2]
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, image.tobytes())
