"""EchoMimic Live as a Pipecat video service: the avatar speaks the bot's text-to-speech, voice and lips on one clock.

    avatar = EchoMimicVideoService(url="ws://avatar-host:8080/api/ws")
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, avatar, transport.output(), ...])

Put it right after the text-to-speech service, as Pipecat's own video services go. It takes the `TTSAudioRawFrame`s
and sends them to the avatar server over the bot WebSocket API instead of passing them on; the server paces them
and sends back, frame by frame, the portrait speaking and the voice that plays with it. Those go on downstream as
`OutputImageRawFrame`s marked `sync_with_audio` and `TTSAudioRawFrame`s, in the order they play, so the output
transport shows each frame when the voice before it has been sent: lips and voice leave from one clock.

- `TTSStoppedFrame` ends the utterance (a `flush`); the frame itself is held back and passed on when the voice has
  played out, so the transport says the bot stopped speaking when it has.
- `InterruptionFrame` sends an `interrupt` and is passed on: the voice queued at the server is dropped, and
  nothing of the interrupted utterances comes out any more, neither voice nor speaking frames: the next frame is
  the portrait at rest, as soon as the server has drawn it.
- Each image carries `metadata["avatar_speaking"]` (the portrait is speaking in it) and `metadata["avatar_pts"]`
  (its media time in the avatar session, in seconds).
- When there is no avatar session (the server refused or could not be reached, or the session ended), an error
  frame says so and the voice passes through unchanged: the bot goes on talking, without its face.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.services.ai_service import AIService
from pipecat.services.settings import ServiceSettings

from adapters.avatar_link import AvatarLink
from adapters.voice_segments import Pcm16, Voice, mono_pcm
from server.bot_client import BotRefused, VideoMessage
from server.bot_protocol import DEFAULT_JPEG_QUALITY, DEFAULT_SAMPLE_RATE


class EchoMimicVideoService(AIService):
    def __init__(
        self,
        *,
        url: str,
        avatar: str | None = None,
        sample_rate: int | None = None,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        """`url`: the server's bot API (`ws://host:port/api/ws`); `avatar`: one of its avatars (default: the
        server's); `sample_rate`: of the voice sent and returned (default: the pipeline's audio output rate);
        `token`: the server's access token (default: `ECHOLIVE_TOKEN`, if set)."""
        # No model to choose: the server has its renderer.
        super().__init__(settings=ServiceSettings(model=None), **kwargs)
        self._url = url
        self._avatar = avatar
        self._sample_rate = sample_rate
        self._jpeg_quality = jpeg_quality
        self._token = token
        self._link: AvatarLink | None = None
        self._receiving: asyncio.Task[None] | None = None
        self._resampler = create_stream_resampler()
        self._held_stops: deque[TTSStoppedFrame] = deque()
        """One per utterance sent and not yet played out, in order."""

    # Pipecat's FrameProcessor.setup narrows the argument of BaseObject.setup; this override only follows it.
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        self._sample_rate = self._sample_rate or setup.audio_out_sample_rate

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        try:
            self._link = await AvatarLink.open(
                self._url,
                avatar=self._avatar,
                sample_rate=self._sample_rate or DEFAULT_SAMPLE_RATE,
                jpeg_quality=self._jpeg_quality,
                token=self._token,
            )
        except (BotRefused, OSError) as error:
            await self.push_error(
                f"no avatar session from {self._url} ({error}); the voice plays without the face", exception=error
            )
            return
        self._receiving = self.create_task(self._receive(self._link))

    async def stop(self, frame: EndFrame) -> None:
        """Let what was said play out, then end the session."""
        await super().stop(frame)
        if self._link is not None and not await self._link.played_out():
            logger.warning(f"{self}: the avatar had not played everything out when the pipeline ended")
        await self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._close()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        link = self._link
        if link is None or link.ended or direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame):
            await link.send_voice(await self._mono_pcm(frame, link.sample_rate))
        elif isinstance(frame, TTSStoppedFrame):
            await link.send_voice(np.frombuffer(await self._resampler.flush(), dtype=np.int16))
            self._held_stops.append(frame)
            await link.end_utterance()
        elif isinstance(frame, InterruptionFrame):
            self._held_stops.clear()
            self._resampler = create_stream_resampler()  # its filter holds the cut reply's last samples
            await link.interrupt()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _mono_pcm(self, frame: TTSAudioRawFrame, sample_rate: int) -> Pcm16:
        samples = mono_pcm(frame.audio, frame.num_channels)
        resampled = await self._resampler.resample(samples.tobytes(), frame.sample_rate, sample_rate)
        return np.frombuffer(resampled, dtype=np.int16)

    async def _receive(self, link: AvatarLink) -> None:
        async for output in link:
            if isinstance(output, VideoMessage):
                image = await _image_frame(output)
                if not link.stale(output):
                    await self.push_frame(image)
            elif isinstance(output, Voice):
                voice = TTSAudioRawFrame(audio=output.pcm.tobytes(), sample_rate=link.sample_rate, num_channels=1)
                await self.push_frame(voice)
            elif self._held_stops:
                await self.push_frame(self._held_stops.popleft())
        await self.push_error(f"the avatar session at {self._url} ended; the voice now plays without the face")

    async def _close(self) -> None:
        if self._receiving is not None:
            await self.cancel_task(self._receiving)
            self._receiving = None
        if self._link is not None:
            link, self._link = self._link, None
            await link.aclose()


async def _image_frame(video: VideoMessage) -> OutputImageRawFrame:
    image = await asyncio.to_thread(video.image)
    height, width = image.shape[:2]
    frame = OutputImageRawFrame(image=image.tobytes(), size=(width, height), format="RGB")
    frame.sync_with_audio = True
    frame.metadata.update(avatar_speaking=video.speaking, avatar_pts=video.pts)
    return frame
