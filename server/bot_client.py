"""A small async Python client for the bot WebSocket API (protocol 1), on `websockets`.

    async with connect_bot("ws://127.0.0.1:8080/api/ws", sample_rate=24_000) as bot:
        print("watch at", bot.started.viewer_url)
        await bot.send_audio(pcm)          # int16 samples (a numpy array) or PCM16 bytes, any length
        await bot.flush()                  # end of the utterance
        async for message in bot:          # VideoMessage, AudioMessage, or an event (server.bot_protocol)
            ...

`connect_bot` returns once the server has answered the start: with the session (`bot.started`), or by raising
`BotRefused` with the server's error code (`token_required` and close code 4401 when the server wants its token:
pass `token=`, or set `ECHOLIVE_TOKEN`). Iteration ends when the connection closes; `bot.close_code` and
`bot.close_reason` then say why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.access_settings import token_from_environment
from server.bot_protocol import (
    PROTOCOL_VERSION,
    Close,
    Error,
    Event,
    Flush,
    Interrupt,
    MediaKind,
    OutputMode,
    Start,
    Started,
    control_message,
    parse_event,
    start_message,
    unpack_media,
)

MAX_MESSAGE_BYTES = 16 * 2**20
CLOSE_WAIT = 10.0
"""Seconds to wait for the server to finish the session once the client has asked it to."""


@dataclass(frozen=True, slots=True)
class VideoMessage:
    index: int
    """The frame slot: `pts * fps`."""
    pts: float
    speaking: bool
    jpeg: bytes

    def image(self) -> npt.NDArray[np.uint8]:
        """The frame as an RGB array (height, width, 3)."""
        decoded = cv2.imdecode(np.frombuffer(self.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError("the frame is not a readable JPEG")
        return np.ascontiguousarray(decoded[..., ::-1])


@dataclass(frozen=True, slots=True)
class AudioMessage:
    sequence: int
    pts: float
    speaking: bool
    pcm: bytes

    def samples(self) -> npt.NDArray[np.int16]:
        """PCM16 mono at the start's sample rate."""
        return np.frombuffer(self.pcm, dtype="<i2").astype(np.int16)


Received = VideoMessage | AudioMessage | Event


class BotRefused(Exception):
    """The server refused the start (or closed before answering it)."""

    def __init__(self, code: str, message: str, close_code: int | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


class BotClient:
    """One session; made by `connect_bot`."""

    def __init__(self, connection: ClientConnection, started: Started) -> None:
        self._connection = connection
        self.started = started

    @property
    def close_code(self) -> int | None:
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self._connection.close_reason

    async def send_audio(self, pcm: npt.NDArray[np.int16] | bytes) -> None:
        data = pcm if isinstance(pcm, bytes) else np.asarray(pcm, dtype="<i2").tobytes()
        await self._connection.send(data)

    async def flush(self) -> None:
        await self._connection.send(control_message(Flush()))

    async def interrupt(self) -> None:
        await self._connection.send(control_message(Interrupt()))

    async def close(self) -> None:
        """Ask the server to end the session; what it still sends (up to `closed`) can be read until the end."""
        try:
            await self._connection.send(control_message(Close()))
        except ConnectionClosed:
            return

    async def receive(self) -> Received:
        """The next message; `ConnectionClosed` once the connection has closed."""
        return _decode(await self._connection.recv())

    def __aiter__(self) -> AsyncIterator[Received]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Received]:
        try:
            while True:
                yield await self.receive()
        except ConnectionClosed:
            return


@asynccontextmanager
async def connect_bot(
    url: str,
    *,
    avatar: str | None = None,
    sample_rate: int = 24_000,
    output: OutputMode = "frames",
    jpeg_quality: int = 80,
    send_audio: bool = True,
    token: str | None = None,
) -> AsyncIterator[BotClient]:
    """Open a session; on leaving the block the session is closed and the connection with it. `token`: the
    server's access token (default: `ECHOLIVE_TOKEN`, if set)."""
    start = Start(PROTOCOL_VERSION, avatar, sample_rate, output, jpeg_quality, send_audio)
    bearer = token if token is not None else token_from_environment()
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    # Media do not compress, and a bot on loopback must not be sent through a proxy from the environment.
    async with connect(
        url, compression=None, proxy=None, max_size=MAX_MESSAGE_BYTES, additional_headers=headers
    ) as connection:
        with suppress(ConnectionClosed):
            # A server that refuses the handshake itself (a missing token) may close before the start is sent;
            # its error event is still there to read.
            await connection.send(start_message(start))
        try:
            first = _decode(await connection.recv())
        except ConnectionClosed as closed:
            raise BotRefused("closed", closed.reason or "the server closed the connection", closed.code) from closed
        if isinstance(first, Error):
            try:
                await connection.recv()
            except ConnectionClosed:
                pass
            raise BotRefused(first.code, first.message, connection.close_code)
        if not isinstance(first, Started):
            raise BotRefused("unexpected", f"the server answered the start with {first!r}", None)
        client = BotClient(connection, first)
        try:
            yield client
        finally:
            await client.close()
            # Read to the end: a client that stopped reading has a full buffer, and the server's close frame
            # waits behind it. A server that has not finished by then is not waited for: leaving `connect`
            # closes the connection from this side.
            with suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT):
                    async for _ in client:
                        pass


def _decode(message: str | bytes) -> Received:
    if isinstance(message, str):
        return parse_event(message)
    header, payload = unpack_media(message)
    if header.kind == MediaKind.VIDEO:
        return VideoMessage(header.number, header.pts, header.speaking, payload)
    return AudioMessage(header.number, header.pts, header.speaking, payload)
