"""A Pipecat bot whose voice and face come from EchoMimic Live, on Pipecat's local WebRTC transport.

    python examples/pipecat_avatar_bot.py [--server ws://127.0.0.1:8080/api/ws] [--port 7860]
                                          [--wav speech.wav | --text "..."]

Start the avatar server first (`echolive serve`), then this, and open http://127.0.0.1:7860 in a browser: press
Connect and the portrait speaks. The pipeline is the one a voice agent has, with a scripted stand-in for the
speech recognition, language model and text-to-speech (which need services and keys):

    transport.input() → ScriptedSpeech → EchoMimicVideoService → transport.output()

`ScriptedSpeech` says its lines (a wav, or espeak-ng saying `--text`) as a text-to-speech service would: a
`TTSStartedFrame`, the audio as fast as it has it, a `TTSStoppedFrame`; every other time it cuts itself off half
way with an `InterruptionFrame`, as when the user starts talking, and the avatar stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pipecat.frames.frames import Frame, TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequest, SmallWebRTCRequestHandler
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.pipecat_avatar import EchoMimicVideoService
from examples.bot_speaks import DEFAULT_TEXT, SAMPLE_RATE, load_speech

PAUSE = 2.0
"""Seconds of silence between two lines."""
PAGE = Path(__file__).with_name("pipecat_avatar_bot.html")


class ScriptedSpeech(FrameProcessor):
    """A text-to-speech stand-in: says `speech` again and again, cutting every other time in half way."""

    def __init__(self, speech: np.ndarray, chunk: float = 0.2) -> None:
        super().__init__()
        step = round(chunk * SAMPLE_RATE)
        self._chunks = [speech[offset : offset + step].tobytes() for offset in range(0, len(speech), step)]
        self._duration = len(speech) / SAMPLE_RATE
        self._speaking: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)

    def start_speaking(self) -> None:
        if self._speaking is None:
            self._speaking = self.create_task(self._speak())

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]  # pipecat leaves it unannotated
        if self._speaking is not None:
            await self.cancel_task(self._speaking)

    async def _speak(self) -> None:
        for line in range(sys.maxsize):
            await self.push_frame(TTSStartedFrame())
            for chunk in self._chunks:
                await self.push_frame(TTSAudioRawFrame(audio=chunk, sample_rate=SAMPLE_RATE, num_channels=1))
            await self.push_frame(TTSStoppedFrame())
            if line % 2:
                await asyncio.sleep(self._duration / 2)
                print("barge-in: interrupting the avatar half way")
                await self.broadcast_interruption()  # type: ignore[no-untyped-call]  # pipecat leaves it unannotated
            else:
                await asyncio.sleep(self._duration)
            await asyncio.sleep(PAUSE)


async def run_bot(connection: SmallWebRTCConnection, args: argparse.Namespace) -> None:
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(
            audio_out_enabled=True,
            video_out_enabled=True,
            video_out_width=512,
            video_out_height=512,
            video_out_framerate=25,
        ),
    )
    speech = ScriptedSpeech(load_speech(args.wav, args.text))
    avatar = EchoMimicVideoService(url=args.server, avatar=args.avatar, token=args.token)
    worker = PipelineWorker(
        Pipeline([transport.input(), speech, avatar, transport.output()]),
        params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE),
    )

    @transport.event_handler("on_client_connected")  # type: ignore[untyped-decorator]
    async def on_client_connected(transport: SmallWebRTCTransport, client: object) -> None:
        speech.start_speaking()

    @transport.event_handler("on_client_disconnected")  # type: ignore[untyped-decorator]
    async def on_client_disconnected(transport: SmallWebRTCTransport, client: object) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def create_app(args: argparse.Namespace) -> FastAPI:
    webrtc = SmallWebRTCRequestHandler()
    bots: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for bot in bots:
            bot.cancel()
        await asyncio.gather(*bots, return_exceptions=True)
        await webrtc.close()  # type: ignore[no-untyped-call]  # pipecat leaves it unannotated

    app = FastAPI(lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text()

    @app.post("/api/offer")
    async def offer(request: SmallWebRTCRequest) -> object:
        async def start(connection: SmallWebRTCConnection) -> None:
            bot = asyncio.create_task(run_bot(connection, args))
            bots.add(bot)
            bot.add_done_callback(bots.discard)

        return await webrtc.handle_web_request(request=request, webrtc_connection_callback=start)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="ws://127.0.0.1:8080/api/ws", help="the avatar server's bot API")
    parser.add_argument("--avatar", default=None, help="an avatar name (default: the server's)")
    parser.add_argument("--token", default=None, help="the avatar server's access token (default: $ECHOLIVE_TOKEN)")
    parser.add_argument("--wav", type=Path, default=None, help="speech to say (default: espeak-ng says --text)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="what espeak-ng says when no --wav is given")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    print(f"open http://{args.host}:{args.port} and press Connect")
    uvicorn.run(create_app(args), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
