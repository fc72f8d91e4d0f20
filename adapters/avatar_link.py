"""A bot session used as a voice agent's avatar: the agent's voice in, frames and the voice played with them out.

Built on `server.bot_client` and nothing else of the server, so the avatar can run on another machine. What a
framework adapter needs on top of the bare protocol is here, once for both:

- the voice that comes back is cut into utterances (`VoiceSegments`): `Voice` pieces to play with the frames, and
  a `SegmentEnd` when an utterance has played out, always, even when part of it was lost or the session ended;
  frame slots the server skipped (it fell behind) are found from the audio's timestamps and played as silence;
- `interrupt()` forgets every utterance at once and never hangs or raises: a send that cannot go out within
  `INTERRUPT_SEND_TIMEOUT` is given up on. Speaking frames of the cut speech still on their way are dropped, so
  the lips stop at once: every speaking frame until the server has confirmed the interrupt and shown the portrait
  at rest (a frame or two it had already drawn can follow its confirmation), or until the next utterance's voice
  comes back;
- a session that ends (the server shut down, the network went) is reported once (`ended`), never raised from a
  send: an adapter then plays the voice without the face.

Iterate the link in one task (`async for output in link`) for as long as it is open; everything it reports,
the confirmation of an interrupt included, arrives through that iteration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack

import numpy as np
from websockets.exceptions import ConnectionClosed

from adapters.voice_segments import Pcm16, Returned, SegmentEnd, Voice, VoiceSegments
from server.bot_client import AudioMessage, BotClient, VideoMessage, connect_bot
from server.bot_protocol import DEFAULT_JPEG_QUALITY, DEFAULT_SAMPLE_RATE, Error, Interrupted, Started

logger = logging.getLogger(__name__)

INTERRUPT_SEND_TIMEOUT = 1.0
"""Seconds an interrupt may wait to be written before the barge-in goes on without it."""
LOST_VOICE_WAIT = 0.5
"""Seconds, beyond the session's playout delay, that an ended utterance may go without voice coming back before
it is taken as played out with the rest lost. Once the bot has ended an utterance, the server can send back at
most a playout delay of silence it put in before the rest of the voice (silence for a stall is put in where the
playout had got to), so a longer quiet means the rest is not coming."""
PLAYED_OUT_MARGIN = 2.0
"""Seconds beyond the voice still to come back that `played_out` waits, for a slow network or a busy machine."""

LinkOutput = VideoMessage | Voice | SegmentEnd
_NO_SAMPLES: Pcm16 = np.zeros(0, dtype=np.int16)


class AvatarLink:
    """Made by `AvatarLink.open`; close with `aclose()` once nothing iterates it any more."""

    def __init__(self, client: BotClient, connection: AsyncExitStack, sample_rate: int) -> None:
        self._client = client
        self._connection = connection
        self.started: Started = client.started
        self.sample_rate = sample_rate
        self._segments = VoiceSegments(sample_rate, quiet_limit=client.started.playout_delay + LOST_VOICE_WAIT)
        self._played_out = asyncio.Event()
        self._played_out.set()
        self._next_sample: int | None = None
        """Where on the session's timeline the next returned audio should start, in samples."""
        self._cut = False
        """Speech was interrupted and the portrait has not been seen at rest since, nor new voice heard."""
        self.ended = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        avatar: str | None = None,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
    ) -> AvatarLink:
        """Start a session in frames mode; `BotRefused` or `OSError` when there is none to be had. `token`: the
        server's access token (default: `ECHOLIVE_TOKEN`, if set)."""
        connection = AsyncExitStack()
        session = connect_bot(url, avatar=avatar, sample_rate=sample_rate, jpeg_quality=jpeg_quality, token=token)
        client = await connection.enter_async_context(session)
        return cls(client, connection, sample_rate)

    async def send_voice(self, pcm: Pcm16) -> None:
        """Part of the current utterance, PCM16 mono at `sample_rate`."""
        if self.ended or not len(pcm):
            return
        self._played_out.clear()
        await self._send(self._client.send_audio(self._segments.outgoing(pcm).tobytes()))

    async def end_utterance(self) -> None:
        if self.ended:
            return
        self._played_out.clear()
        self._segments.end_utterance()
        await self._send(self._client.flush())

    async def interrupt(self) -> None:
        """Barge-in: from now on nothing of what was sent plays, and no utterance sent so far reports an end."""
        self._segments.clear()
        self._cut = True
        self._played_out.set()
        if self.ended:
            return
        try:
            async with asyncio.timeout(INTERRUPT_SEND_TIMEOUT):
                await self._send(self._client.interrupt())
        except TimeoutError:
            # The message stays in the connection's buffer and goes out when it can; its confirmation with it.
            logger.warning(
                "the interrupt was not written within %.1f s: the server is not reading", INTERRUPT_SEND_TIMEOUT
            )

    async def played_out(self) -> bool:
        """Wait until every utterance sent has played out (as long as what is queued can take); False on time-out."""
        wait = self._segments.queued + self.started.playout_delay + LOST_VOICE_WAIT + PLAYED_OUT_MARGIN
        try:
            async with asyncio.timeout(wait):
                await self._played_out.wait()
        except TimeoutError:
            return False
        return True

    def stale(self, video: VideoMessage) -> bool:
        """The frame shows speech that an interrupt has cut: not to be shown. (Ask again after any wait.)"""
        return video.speaking and self._cut

    def __aiter__(self) -> AsyncIterator[LinkOutput]:
        return self._outputs()

    async def _outputs(self) -> AsyncIterator[LinkOutput]:
        async for message in self._client:
            if isinstance(message, VideoMessage):
                # Slots skipped before this frame are known now: the audio of every earlier slot came before it.
                for piece in self._returned(message.pts, _NO_SAMPLES):
                    yield piece
                if not message.speaking and not self._segments.clearing:
                    self._cut = False
                if not self.stale(message):
                    yield message
            elif isinstance(message, AudioMessage):
                for piece in self._returned(message.pts, message.samples()):
                    yield piece
            elif isinstance(message, Interrupted):
                self._segments.confirm_clear()
            elif isinstance(message, Error):
                logger.warning("the avatar server refused a message: %s: %s", message.code, message.message)
        self._end(f"closed by the server ({self._client.close_code}: {self._client.close_reason})")
        while self._segments.pending:
            yield self._segments.abandon()
        self._played_out.set()

    def _returned(self, pts: float, samples: Pcm16) -> list[Returned]:
        """The voice in audio that starts at media time `pts`, after silence for any slots skipped before it."""
        first = round(pts * self.sample_rate)
        skipped = 0 if self._next_sample is None else max(0, first - self._next_sample)
        self._next_sample = first + len(samples)
        pieces = self._segments.returned(samples, skipped)
        if any(isinstance(piece, Voice) for piece in pieces):
            self._cut = False
        if not self._segments.pending:
            self._played_out.set()
        return pieces

    async def aclose(self) -> None:
        """End the session (it is closed cleanly, reading what the server still sends)."""
        self.ended = True
        await self._connection.aclose()

    async def _send(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except ConnectionClosed as closed:
            self._end(f"lost ({closed})")

    def _end(self, how: str) -> None:
        if not self.ended:
            logger.warning("the avatar session %s was %s", self.started.session_id, how)
        self.ended = True
