"""Everything the server sends a bot, written in order by one task, with a stated policy for a slow reader.

Media are queued as the session's clock plays them out; events in between, where they happened. A client that
reads slower than real time makes the queue grow, so it is bounded (the slow-reader policy):

- video: at most `max_video_backlog` seconds of frames wait; when one more comes, the oldest waiting frame is
  dropped, so what the client sees is as fresh as it can be;
- audio: at most `max_audio_backlog` seconds wait (it is small, and a voice with holes is worse than a picture
  with them); past that the oldest waiting audio is dropped;
- events are never dropped.

Each drop is counted (`on_drop(kind)`, for `/metrics` and the `stats` event). Frames are JPEG-encoded only when
they are about to be written, so a dropped frame costs nothing, and off the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import cv2
import numpy as np

from server.bot_protocol import Event, MediaHeader, MediaKind, event_message
from server.playout import Tick
from streaming.frames import RgbImage


@dataclass(frozen=True, slots=True)
class _Video:
    tick: Tick


@dataclass(frozen=True, slots=True)
class _Audio:
    message: bytes
    duration: float


_Outgoing = Event | _Video | _Audio
_SLACK = 1e-6
"""Seconds of float error tolerated in summing audio durations."""


def encode_jpeg(image: RgbImage, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


class MediaSender:
    def __init__(
        self,
        send: Callable[[str | bytes], Awaitable[None]],
        *,
        fps: float,
        jpeg_quality: int,
        on_drop: Callable[[str], None],
        max_video_backlog: float = 0.5,
        max_audio_backlog: float = 5.0,
    ) -> None:
        self._send = send
        self._fps = fps
        self._jpeg_quality = jpeg_quality
        self._on_drop = on_drop
        self._max_video = max(1, round(max_video_backlog * fps))
        self._max_audio = max_audio_backlog
        self._queue: deque[_Outgoing] = deque()
        self._video_queued = 0
        self._audio_queued = 0.0
        self._arrived = asyncio.Event()
        self.video_dropped = 0
        self.audio_dropped = 0

    @property
    def backlog(self) -> float:
        """Seconds of media waiting to be written."""
        return max(self._video_queued / self._fps, self._audio_queued)

    def send_event(self, event: Event) -> None:
        self._put(event)

    def send_video(self, tick: Tick) -> None:
        if self._video_queued >= self._max_video:
            self._drop_oldest(_Video)
        self._video_queued += 1
        self._put(_Video(tick))

    def send_audio(self, header: MediaHeader, pcm: bytes, duration: float) -> None:
        while self._audio_queued + duration > self._max_audio + _SLACK and self._audio_queued > 0:
            self._drop_oldest(_Audio)
        self._audio_queued += duration
        self._put(_Audio(header.pack(pcm), duration))

    def pending_events(self) -> list[Event]:
        """The events not yet written, taken out of the queue (for a last word before closing)."""
        events = [item for item in self._queue if not isinstance(item, _Video | _Audio)]
        self._queue.clear()
        self._video_queued, self._audio_queued = 0, 0.0
        return events

    async def run(self) -> None:
        """Write the queue in order, forever; a failed send ends it with the send's exception."""
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            item = self._queue.popleft()
            if isinstance(item, _Video):
                self._video_queued -= 1
                await self._send(await self._encode(item.tick))
            elif isinstance(item, _Audio):
                self._audio_queued -= item.duration
                await self._send(item.message)
            else:
                await self._send(event_message(item))

    async def _encode(self, tick: Tick) -> bytes:
        jpeg = await asyncio.to_thread(encode_jpeg, tick.frame.image, self._jpeg_quality)
        return MediaHeader(MediaKind.VIDEO, tick.frame.speaking, tick.slot, tick.media_time).pack(jpeg)

    def _put(self, item: _Outgoing) -> None:
        self._queue.append(item)
        self._arrived.set()

    def _drop_oldest(self, kind: type[_Video] | type[_Audio]) -> None:
        for position, item in enumerate(self._queue):
            if isinstance(item, kind):
                del self._queue[position]
                if isinstance(item, _Video):
                    self._video_queued -= 1
                    self.video_dropped += 1
                    self._on_drop("video")
                else:
                    self._audio_queued -= item.duration
                    self.audio_dropped += 1
                    self._on_drop("audio")
                return
