"""Barge-in through the voice-agent adapters: from the interruption to the first frame at rest they put out.

    python -m bench.adapters_barge_in [--tries 10]

Starts the server in a child process (lite renderer, bundled portrait) and, on loopback, speaks two sentences
through each adapter `--tries` times, interrupting 1.5 s into the speech. Timed on the client's clock:

- Pipecat: `EchoMimicVideoService` in Pipecat's test pipeline (`run_test`, no transport), watched by an observer.
  From the service passing the `InterruptionFrame` on (it sends `interrupt` right after) to the first
  `OutputImageRawFrame` it pushes that is not speaking (the server's flag), and to the first whose mouth is closed
  (`MouthProbe`).
- LiveKit: `EchoMimicVideoGenerator` iterated directly. From `clear_buffer()` being called to the first
  `rtc.VideoFrame` it yields whose mouth is closed (its frames carry no speaking flag).

The target is under 200 ms (the bots issue's, for the bare WebSocket API).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.tests.utils import SleepFrame, run_test

from adapters.avatar_link import AvatarLink
from adapters.livekit_avatar import EchoMimicVideoGenerator
from adapters.pipecat_avatar import EchoMimicVideoService
from bench.child_server import child_server
from bench.latency import read_audio
from bench.mouth_probe import MouthProbe
from server.speaking_track import MIC_RATE
from streaming.lite.default_portrait import default_portrait_path, load_portrait
from streaming.lite.renderer import LiteRenderer

RATE = MIC_RATE
SENTENCES = "Hello there. My name is Eileen, and I fly to space. I like to talk about the stars and the planets."
SPEAKING_BEFORE_INTERRUPT = 1.5
REST_AFTER = 1.0
CLOSED = 0.03
"""Share of dark pixels in the mouth box below which the lite mouth is closed (as in the bot tests)."""

Pcm16 = npt.NDArray[np.int16]


def speech(workdir: Path) -> Pcm16:
    wav = workdir / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SENTENCES], check=True, timeout=60)
    samples = read_audio(wav)
    return np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)


def mouth(probe: MouthProbe, rgb: npt.NDArray[np.uint8]) -> float:
    return probe.openness(probe.crop(rgb))


class PushedByService(BaseObserver):
    """(time, frame) of every frame the service pushes downstream."""

    def __init__(self, service: EchoMimicVideoService) -> None:
        super().__init__()
        self.service = service
        self.pushed: list[tuple[float, Frame]] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is self.service:
            self.pushed.append((time.monotonic(), data.frame))


async def pipecat_barge_in(url: str, pcm: Pcm16, tries: int, probe: MouthProbe) -> tuple[list[float], list[float]]:
    step = RATE // 10
    reply: list[Frame] = [TTSStartedFrame()]
    reply += [TTSAudioRawFrame(pcm[at : at + step].tobytes(), RATE, 1) for at in range(0, len(pcm), step)]
    reply.append(TTSStoppedFrame())
    script: list[Frame] = [SleepFrame(sleep=0.5)]
    for _ in range(tries):
        script += [
            *reply,
            SleepFrame(sleep=SPEAKING_BEFORE_INTERRUPT),
            InterruptionFrame(),
            SleepFrame(sleep=REST_AFTER),
        ]
    service = EchoMimicVideoService(url=url, sample_rate=RATE)
    observer = PushedByService(service)
    await run_test(service, frames_to_send=script, observers=[observer])

    at_rest: list[float] = []
    closed: list[float] = []
    interrupted: float | None = None
    for at, frame in observer.pushed:
        if isinstance(frame, InterruptionFrame):
            interrupted = at
            rest_seen = closed_seen = False
        elif isinstance(frame, OutputImageRawFrame) and interrupted is not None:
            if not rest_seen and not frame.metadata["avatar_speaking"]:
                rest_seen = True
                at_rest.append(at - interrupted)
            image = np.frombuffer(frame.image, np.uint8).reshape(frame.size[1], frame.size[0], 3)
            if not closed_seen and mouth(probe, image) < CLOSED:
                closed_seen = True
                closed.append(at - interrupted)
    return at_rest, closed


async def livekit_barge_in(url: str, pcm: Pcm16, tries: int, probe: MouthProbe) -> list[float]:
    generator = EchoMimicVideoGenerator(await AvatarLink.open(url, sample_rate=RATE))
    yielded: list[tuple[float, rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]] = []

    speaking = asyncio.Event()

    async def collect() -> None:
        async for item in generator:
            yielded.append((time.monotonic(), item))
            if isinstance(item, rtc.AudioFrame):
                speaking.set()

    collecting = asyncio.create_task(collect())
    cleared: list[float] = []
    try:
        for _ in range(tries):
            for offset in range(0, len(pcm), RATE // 10):
                chunk = pcm[offset : offset + RATE // 10]
                await generator.push_audio(rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)))
            await generator.push_audio(AudioSegmentEnd())
            await speaking.wait()
            await asyncio.sleep(SPEAKING_BEFORE_INTERRUPT)
            cleared.append(time.monotonic())
            await generator.clear_buffer()
            speaking.clear()
            await asyncio.sleep(REST_AFTER)
    finally:
        collecting.cancel()
        await asyncio.gather(collecting, return_exceptions=True)
        await generator.aclose()

    closed: list[float] = []
    for start in cleared:
        for at, item in yielded:
            if at >= start and isinstance(item, rtc.VideoFrame):
                rgba = np.frombuffer(item.data, np.uint8).reshape(item.height, item.width, 4)
                if mouth(probe, rgba[..., :3]) < CLOSED:
                    closed.append(at - start)
                    break
    return closed


def summary(values: list[float]) -> str:
    ms = sorted(1000 * value for value in values)
    return f"median {statistics.median(ms):.0f} ms, min {ms[0]:.0f}, max {ms[-1]:.0f} (n = {len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    probe = MouthProbe.around(LiteRenderer().prepare_avatar(load_portrait(default_portrait_path())))
    with tempfile.TemporaryDirectory() as workdir:
        pcm = speech(Path(workdir))
        with child_server(Path(workdir)) as server:
            at_rest, pipecat_closed = asyncio.run(pipecat_barge_in(server.ws_url, pcm, args.tries, probe))
            livekit_closed = asyncio.run(livekit_barge_in(server.ws_url, pcm, args.tries, probe))
    cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    print(f"machine: {cpu.split(':', 1)[1].strip()}, {len(os.sched_getaffinity(0))} cores, {platform.python_version()}")
    print(f"server: lite renderer, defaults; {args.tries} interruptions per adapter, {SPEAKING_BEFORE_INTERRUPT} s in")
    print(f"pipecat: interruption to first frame at rest (flag): {summary(at_rest)}")
    print(f"pipecat: interruption to first closed mouth (probe): {summary(pipecat_closed)}")
    print(f"livekit: clear_buffer to first closed mouth (probe): {summary(livekit_closed)}")


if __name__ == "__main__":
    main()
