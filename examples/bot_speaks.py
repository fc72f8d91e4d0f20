"""A bot speaks through the avatar over the WebSocket API, and is interrupted mid-sentence (barge-in).

    python examples/bot_speaks.py [--server ws://127.0.0.1:8080/api/ws] [--wav speech.wav | --text "..."]
                                  [--output bot_speaks.mp4] [--interrupt-after 2.0]

Start a server first (`echolive serve`). The bot sends its speech as fast as it has it, as a text-to-speech
engine would (a wav file, or espeak-ng saying `--text`), writes what comes back (the avatar's frames and the
voice played with them) to an MP4, and prints a link where anyone can watch the session live. Part way through
the second sentence it interrupts, as a voice agent does when the user starts talking, and reports how long the
avatar took to stop speaking.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.bot_client import AudioMessage, BotClient, VideoMessage, connect_bot
from server.bot_protocol import Interrupted, SpeechEnded, SpeechStarted
from server.recording import Recording

SAMPLE_RATE = 24_000
CHUNK_SECONDS = 0.2
"""How much speech goes in one message; a text-to-speech engine hands it over in pieces like this."""
DEFAULT_TEXT = (
    "Hello! I am a bot, and this face is speaking with my voice. "
    "Now I will tell you a very long story about the stars, and the planets, and the people who fly between them."
)


def load_speech(wav: Path | None, text: str) -> npt.NDArray[np.int16]:
    """PCM16 mono at `SAMPLE_RATE`, from the wav file or spoken by espeak-ng."""
    if wav is not None:
        source: str | io.BytesIO = str(wav)
    elif shutil.which("espeak-ng"):
        source = io.BytesIO(subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout)
    else:
        raise SystemExit("give --wav FILE, or install espeak-ng to say --text")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(source, mode="r") as container:
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    frames += resampler.resample(None)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.int16)


async def speak(bot: BotClient, speech: npt.NDArray[np.int16]) -> None:
    step = round(CHUNK_SECONDS * SAMPLE_RATE)
    for offset in range(0, len(speech), step):
        await bot.send_audio(speech[offset : offset + step])
    await bot.flush()


async def run(args: argparse.Namespace) -> None:
    speech = load_speech(args.wav, args.text)
    received: list[VideoMessage | AudioMessage] = []
    async with connect_bot(args.server, avatar=args.avatar, sample_rate=SAMPLE_RATE, token=args.token) as bot:
        started = bot.started
        print(f"session {started.session_id}: {started.width}x{started.height} at {started.fps:g} fps")
        print(f"watch it live at {started.viewer_url}")
        speaking_since: float | None = None
        interrupt_sent: float | None = None
        rest_until: float | None = None
        await speak(bot, speech)
        async for message in bot:
            if isinstance(message, SpeechStarted | SpeechEnded | Interrupted):
                print(f"{message.type} at {message.pts:.2f} s")
            if not isinstance(message, VideoMessage | AudioMessage):
                continue
            # Kept as they come and written afterwards: decoding and encoding here would put this client behind.
            received.append(message)
            if isinstance(message, AudioMessage):
                continue
            now = time.monotonic()
            if message.speaking and speaking_since is None:
                speaking_since = now
            talked_long_enough = speaking_since is not None and now - speaking_since > args.interrupt_after
            if interrupt_sent is None and talked_long_enough:
                print(f"interrupting after {args.interrupt_after:g} s of speech")
                interrupt_sent = now
                await bot.interrupt()
            elif interrupt_sent is not None and rest_until is None and not message.speaking:
                print(f"barge-in: the avatar stopped speaking {1000 * (now - interrupt_sent):.0f} ms later")
                rest_until = message.pts + 1.0
            elif rest_until is not None and message.pts >= rest_until:
                break
    write(args.output, received, started.width, started.height)


def write(output: Path, received: list[VideoMessage | AudioMessage], width: int, height: int) -> None:
    recording = Recording(output, width=width, height=height, sample_rate=SAMPLE_RATE)
    first_pts = received[0].pts
    try:
        for message in received:
            if isinstance(message, VideoMessage):
                recording.add_video(message.image(), message.pts - first_pts)
            else:
                recording.add_audio(message.samples(), message.pts - first_pts)
    finally:
        recording.close()
    print(f"wrote {output} ({recording.frames_written} frames, with the voice)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="ws://127.0.0.1:8080/api/ws", help="the server's bot API")
    parser.add_argument("--avatar", default=None, help="an avatar name (default: the server's)")
    parser.add_argument("--token", default=None, help="the server's access token (default: $ECHOLIVE_TOKEN)")
    parser.add_argument("--wav", type=Path, default=None, help="speech to send (default: espeak-ng says --text)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="what espeak-ng says when no --wav is given")
    parser.add_argument("--output", type=Path, default=Path("bot_speaks.mp4"), help="the MP4 to write")
    parser.add_argument(
        "--interrupt-after", type=float, default=4.0, help="seconds of speech before the bot interrupts itself"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
