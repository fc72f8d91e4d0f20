"""A microphone that speaks a recording: an aiortc track sending it in real time, as a browser sends a microphone.

`echolive bridge --mic FILE` talks to the server with it; the latency benchmark times speech onsets from it; the
server tests speak to sessions with it.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.clock import Clock, MonotonicClock

MIC_RATE = 48_000
PACKET = 960
"""20 ms at 48 kHz: one Opus packet, as a browser sends it."""


class SpeakingTrack(MediaStreamTrack):
    """Sends `speech` (48 kHz mono float32) in 20 ms packets, each when its last sample would have been captured;
    after the end, silence until stopped."""

    kind = "audio"

    def __init__(self, speech: npt.NDArray[np.float32], clock: Clock | None = None) -> None:
        super().__init__()
        self._pcm = np.round(np.clip(speech, -1, 1) * 32767).astype(np.int16)
        self._clock = clock if clock is not None else MonotonicClock()
        self._sent = 0
        self.start: float | None = None
        """Clock time of the first sample: sample `n` is spoken at `start + n / MIC_RATE`."""
        self.finished = asyncio.Event()
        """Set once the last packet holding speech has been sent."""

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = self._clock.now()
        await self._clock.sleep_until(self.start + (self._sent + PACKET) / MIC_RATE)
        block = self._pcm[self._sent : self._sent + PACKET]
        block = np.pad(block, (0, PACKET - len(block)))  # silence once the speech has run out
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = MIC_RATE, self._sent, Fraction(1, MIC_RATE)
        self._sent += PACKET
        if self._sent >= len(self._pcm):
            self.finished.set()
        return frame
