"""`echolive serve` in a child process on a free port of 127.0.0.1, for the benchmarks and tests that call the
server as a user would: its own process, so the client and the server do not share one interpreter's lock.

    with child_server(workdir, "--fps", "25") as server:
        ...  # server.base_url, server.ws_url, server.pid

The server gathers ICE candidates on 127.0.0.1 only and keeps its avatars in `workdir`; its output goes to
`workdir/server.log`, whose tail is shown if it exits before it is ready. On leaving the block it is stopped by
its pid (SIGTERM: uvicorn closes every session), and killed if it has not exited within `STOP_WAIT` seconds.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READY_WAIT = 60.0
STOP_WAIT = 30.0


@dataclass(frozen=True)
class ChildServer:
    base_url: str
    pid: int

    @property
    def ws_url(self) -> str:
        """The bot WebSocket endpoint."""
        return self.base_url.replace("http://", "ws://") + "/api/ws"


@contextmanager
def child_server(workdir: Path, *serve_arguments: str) -> Iterator[ChildServer]:
    """`echolive serve` with `serve_arguments` after the loopback ones; yields once `/healthz` answers."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--ice-address", "127.0.0.1", "--avatar-dir", str(workdir / "avatars")),
        *serve_arguments,
    ]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, server, log_path)
        yield ChildServer(base_url, server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_healthy(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not become healthy within {READY_WAIT:.0f} s")


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port: int = probe_socket.getsockname()[1]
    return port
