"""`examples/bot_speaks.py` against a live server: it speaks, interrupts itself, and writes an MP4 with the voice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av

from server.app import create_app
from server.settings import ServerSettings
from streaming.lite.renderer import LiteRenderer
from tests.server.live_server import serve_in_thread

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bot_speaks.py"


def test_the_bot_example_speaks_is_interrupted_and_records_what_it_received(
    settings: ServerSettings, lite_renderer: LiteRenderer, tmp_path: Path
) -> None:
    output = tmp_path / "bot.mp4"
    text = "Hello there. I am a bot, and I will talk for quite a while about nothing in particular."
    with serve_in_thread(create_app(settings, renderer=lite_renderer)) as url:
        arguments = ["--server", url.replace("http://", "ws://") + "/api/ws", "--text", text]
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), *arguments, "--interrupt-after", "1.0", "--output", str(output)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    assert "watch it live at http://127.0.0.1:" in run.stdout
    assert "interrupted at" in run.stdout and "barge-in: the avatar stopped speaking" in run.stdout
    with av.open(str(output)) as container:
        kinds = sorted(stream.type for stream in container.streams)
        frames = container.streams.video[0].frames
    assert kinds == ["audio", "video"] and frames > 25
