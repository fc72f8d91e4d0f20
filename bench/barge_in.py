"""Barge-in over the bot WebSocket API: from `interrupt` sent to the first frame of the avatar at rest received.

    python -m bench.barge_in [--tries 12]

Starts the server in a child process (lite renderer, bundled portrait, its defaults) and drives it from a bot
client in this process, both on loopback. The bot sends a long sentence spoken by espeak-ng, as fast as it has it
(a text-to-speech engine's burst); once frames of the avatar speaking are coming in, and right after one of them
arrives, it sends `interrupt` and times, on its own clock:

- interrupt → `interrupted` event: the server has dropped the queued audio and frames;
- interrupt → first non-speaking frame: the first video message whose speaking flag is clear. Frames already on
  their way (written to the socket, or due before the avatar can be redrawn at rest) still show it speaking.

Then it waits for the avatar to rest and starts the next try. The client does no decoding, so its own work does
not delay what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.child_server import child_server
from bench.latency import read_audio, summary
from bench.lite_fps import cpu_model
from server.bot_client import BotClient, VideoMessage, connect_bot
from server.bot_protocol import Interrupted, SpeechEnded, Stats

RATE = 24_000
SENTENCE = (
    "the quick brown fox jumps over the lazy dog and then runs all the way around the big green field "
    "and back again to the old red barn where the farmer waits with a bucket of warm milk"
)
"""No punctuation: espeak-ng says it without pauses, so the avatar is speaking whenever the interrupt lands."""
SPEAKING_BEFORE_INTERRUPT = (0.6, 1.8)
"""Seconds of speaking frames received before the interrupt; spread evenly over the tries."""
REST = 1.0
"""Seconds of frames at rest after each try, before the next."""


@dataclass(frozen=True)
class Try:
    to_interrupted: float
    to_rest: float
    speaking_frames_after: int
    """Video frames still showing the avatar speaking that arrived after the interrupt was sent."""


def say(text: str) -> npt.NDArray[np.int16]:
    with tempfile.TemporaryDirectory() as workdir:
        wav = Path(workdir) / "sentence.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=60)
        speech = read_audio(wav)  # 48 kHz float
    return np.round(np.clip(speech[::2], -1, 1) * 32767).astype(np.int16)


async def one_try(bot: BotClient, speech: npt.NDArray[np.int16], speak_for: float) -> Try:
    step = RATE // 10
    for offset in range(0, len(speech), step):
        await bot.send_audio(speech[offset : offset + step])
    await bot.flush()
    speaking_since: float | None = None
    sent: float | None = None
    interrupted_at: float | None = None
    speaking_after = 0
    async for message in bot:
        now = time.monotonic()
        if isinstance(message, Interrupted):
            interrupted_at = now
        if not isinstance(message, VideoMessage):
            continue
        if sent is None:
            if message.speaking:
                speaking_since = speaking_since or now
                if now - speaking_since >= speak_for:
                    await bot.interrupt()
                    sent = time.monotonic()
            continue
        if message.speaking:
            speaking_after += 1
            continue
        assert interrupted_at is not None, "the frames at rest came before the interrupted event"
        result = Try(interrupted_at - sent, now - sent, speaking_after)
        await settle(bot, REST)
        return result
    raise RuntimeError("the connection closed during a try")


async def settle(bot: BotClient, seconds: float) -> None:
    """Read (and drop) what comes for `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            async for message in bot:
                if isinstance(message, SpeechEnded | Stats):
                    continue
    except TimeoutError:
        return


async def run(url: str, tries: int) -> tuple[list[Try], float]:
    speech = say(SENTENCE)
    results = []
    async with connect_bot(url, sample_rate=RATE) as bot:
        await settle(bot, 1.0)
        low, high = SPEAKING_BEFORE_INTERRUPT
        for number in range(tries):
            speak_for = low + (high - low) * number / max(1, tries - 1)
            results.append(await one_try(bot, speech, speak_for))
        return results, bot.started.playout_delay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, child_server(Path(workdir)) as server:
        results, playout_delay = asyncio.run(run(server.ws_url, args.tries))
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")
    print(
        f"server: lite renderer at its default 25 fps, playout delay {1000 * playout_delay:.0f} ms; client on loopback"
    )
    print(f"tries: {len(results)}")
    print(f"interrupt -> interrupted event: {summary([result.to_interrupted for result in results])}")
    print(f"interrupt -> first non-speaking frame: {summary([result.to_rest for result in results])}")
    after = [result.speaking_frames_after for result in results]
    print(f"speaking frames received after the interrupt: median {np.median(after):.0f}, max {max(after)}")


if __name__ == "__main__":
    main()
