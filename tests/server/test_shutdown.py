"""`echolive serve` stopped by a signal while a caller and a bot are streaming: every session is closed (the bot
is told why), the process exits on its own within a few seconds, and nothing is left running."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import httpx2
import numpy as np
import numpy.typing as npt
import pytest

from server.bot_client import VideoMessage, connect_bot
from server.bot_protocol import Closed
from tests.server.loopback_call import LoopbackCall
from tests.server.test_bot_api import ws_url

STARTUP_WAIT = 120.0
"""Seconds the server may take to start: a cold import and the renderer's warm-up on a busy machine."""
EXIT_WAIT = 15.0
"""Seconds the server may take to exit once signalled: a stuck process fails the test, a slow one does not."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_until_serving(url: str, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + STARTUP_WAIT
    async with httpx2.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            if server.returncode is not None:
                raise AssertionError(f"the server exited early with {server.returncode} (its log follows the test)")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"the server did not start within {STARTUP_WAIT:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_closes_live_sessions_and_the_server_exits(
    tmp_path: Path, speech: npt.NDArray[np.float32], stop: signal.Signals
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [
        *("-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--size", "128", "--ice-address", "127.0.0.1", "--avatar-dir", str(tmp_path / "avatars")),
    ]
    with log.open("wb") as output:
        server = await asyncio.create_subprocess_exec(sys.executable, *command, stdout=output, stderr=output)
    try:
        await wait_until_serving(url, server)
        async with httpx2.AsyncClient(base_url=url) as http, connect_bot(ws_url(url)) as bot:
            caller = LoopbackCall(http, speech, read_mouth=None)
            assert (await caller.start()).status_code == 201
            await caller.wait_for_frames(5)
            bot_messages = []
            async with asyncio.timeout(10):
                async for message in bot:
                    bot_messages.append(message)
                    if isinstance(message, VideoMessage):
                        break
            assert (await http.get("/healthz")).json()["sessions"] == 2

            server.send_signal(stop)
            async with asyncio.timeout(EXIT_WAIT):
                bot_messages.extend([message async for message in bot])
                exit_code = await server.wait()
            await caller.close()
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()
        print(await asyncio.to_thread(log.read_text))
    text = await asyncio.to_thread(log.read_text)
    assert exit_code == 0, text
    assert "Traceback" not in text, text
    closed = [message for message in bot_messages if isinstance(message, Closed)]
    assert [message.reason for message in closed] == ["server_shutdown"], bot_messages[-3:]
    assert bot.close_code == 1001
