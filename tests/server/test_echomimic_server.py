"""The whole live path with EchoMimic: `echolive serve --renderer echomimic` on the tiny official-layout weights, a
WebRTC client speaking espeak speech to it, speaking frames coming back, and the session and server ending cleanly.

On this CPU a window renders several times slower than real time, so most speaking frames arrive late and the
pacer drops them; the first windows of each utterance still go out (their render time is in the playout delay).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import numpy as np
import numpy.typing as npt
import pytest

from server.ice_addresses import restrict_ice_host_addresses
from tests.echomimic.fake_weights_folder import write_fake_weights_folder
from tests.server.loopback_call import LoopbackCall
from tests.server.test_webrtc_session import metric, wait_until_no_sessions

STARTUP_SECONDS = 300.0
"""Loading torch and the tiny weights, then four warm-up windows on the CPU: seconds when the machine is free,
minutes when other work starves its two cores."""
SIZE = 64
CHANGED = 20.0
"""Mean grey-level change from the idle portrait above which a received frame was drawn by diffusion (the tiny
random weights draw nothing like the portrait; idle frames sway it by a pixel or two)."""


@pytest.fixture(scope="module")
def echomimic_server(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    weights = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "server.cli", "serve", "--renderer", "echomimic", "--weights", str(weights)),
        *("--size", str(SIZE), "--host", "127.0.0.1", "--port", str(port), "--ice-address", "127.0.0.1"),
        *("--avatar-dir", str(tmp_path_factory.mktemp("avatars"))),
    ]
    server = subprocess.Popen(
        command, cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert server.poll() is None, f"the server exited: {server.communicate()[0]}"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx2.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        yield url
        os.kill(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=15)
        assert server.returncode == 0, output
        assert "Finished server process" in output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_speech_is_drawn_by_echomimic_and_delivered_over_webrtc(
    echomimic_server: str, speech: npt.NDArray[np.float32]
) -> None:
    restrict_ice_host_addresses(("127.0.0.1",))  # the client too gathers on loopback only
    async with httpx2.AsyncClient(base_url=echomimic_server, timeout=30.0) as http:
        health = (await http.get("/healthz")).json()
        assert (health["renderer"], health["fps"]) == ("echomimic", 24.0)
        call = LoopbackCall(http, speech, read_mouth=None, keep_images=True)
        response = await call.start()
        assert response.status_code == 201, response.text
        windows_before = await windows_rendered(http)
        try:
            await call.wait_for_frames(24)
            await asyncio.sleep(len(speech) / 48_000)
        finally:
            deleted = await http.delete(f"/api/sessions/{call.session_id}")
            await call.close()
        assert deleted.status_code == 204
        await wait_until_no_sessions(http)
        exposition = (await http.get("/metrics")).text

    assert windows_in(exposition) > windows_before, "no speech window was rendered for the session"
    assert all((frame.width, frame.height) == (SIZE, SIZE) for frame in call.frames)
    idle = call.images[0].astype(np.float32)
    drawn = [image for image in call.images if np.abs(image.astype(np.float32) - idle).mean() > CHANGED]
    assert drawn, "no frame drawn by diffusion reached the client"
    assert metric(exposition, 'echolive_sessions_ended_total{reason="hang_up"}') == 1


async def windows_rendered(http: httpx2.AsyncClient) -> float:
    return windows_in((await http.get("/metrics")).text)


def windows_in(exposition: str) -> float:
    return metric(exposition, 'echolive_render_seconds_count{kind="window"}')
