"""The viewer link in a real browser: Debian's chromium opens a bot session's watch page, plays its video, and
says so when the session ends. A screenshot of the page is kept in `test-artifacts/`."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from server.access_settings import AccessSettings
from server.app import create_app
from server.bot_client import connect_bot
from server.settings import ServerSettings
from streaming.lite.renderer import LiteRenderer
from tests.server.live_server import serve_in_thread
from tests.server.test_browser import ARTIFACTS, launch
from tests.streaming.signals import spoken

pytestmark = pytest.mark.browser

RATE = 24_000


class Bot(threading.Thread):
    """A bot in viewer mode on a thread of its own: it speaks a sentence every two seconds until told to stop."""

    def __init__(self, url: str, token: str | None = None) -> None:
        super().__init__(name="bot")
        self.url = url
        self.token = token
        self.viewer_url = ""
        self.started = threading.Event()
        self.stop = threading.Event()
        self.speech = np.round(spoken("Hello, I am a bot, and you are watching me.", RATE) * 32767).astype(np.int16)

    def run(self) -> None:
        asyncio.run(self._speak())

    async def _speak(self) -> None:
        async with connect_bot(
            self.url.replace("http://", "ws://") + "/api/ws", output="viewer", token=self.token
        ) as bot:
            self.viewer_url = bot.started.viewer_url
            self.started.set()
            while not await asyncio.to_thread(self.stop.wait, 2.0):
                await bot.send_audio(self.speech)
                await bot.flush()


def test_the_watch_page_plays_a_bot_session_and_says_when_it_ends(tmp_path: Path, lite_renderer: LiteRenderer) -> None:
    settings = ServerSettings(avatar_dir=tmp_path / "avatars", ice_host_addresses=("127.0.0.1",))
    with serve_in_thread(create_app(settings, renderer=lite_renderer)) as url, sync_playwright() as playwright:
        bot = Bot(url)
        bot.start()
        try:
            assert bot.started.wait(20), "the bot session did not start"
            context = launch(playwright, tmp_path / "profile", [])
            page = context.new_page()
            page.goto(bot.viewer_url)
            page.wait_for_function("document.getElementById('connection-state').textContent === 'live'", timeout=20_000)
            page.wait_for_function(
                "document.getElementById('avatar-video').currentTime > 1 && "
                "document.getElementById('avatar-video').videoWidth === 512",
                timeout=20_000,
            )
            with urllib.request.urlopen(f"{url}/api/sessions", timeout=10) as response:
                listed = json.load(response)["sessions"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "watch_page.png"))
        finally:
            bot.stop.set()
            bot.join(timeout=30)
        page.wait_for_function("document.getElementById('connection-state').textContent === 'ended'", timeout=40_000)
        message = page.text_content("#message")
        context.close()

    assert [(session["transport"], session["viewers"]) for session in listed] == [("websocket", 1)]
    assert message is not None and "The session has ended" in message


def test_a_watch_link_with_its_viewer_token_plays_on_a_server_with_a_token(
    tmp_path: Path, lite_renderer: LiteRenderer
) -> None:
    """The link's own token is enough: the page never asks for the server's (a prompt would fail the test)."""
    token = "watch-test-token-0123456789"
    settings = ServerSettings(
        avatar_dir=tmp_path / "avatars", ice_host_addresses=("127.0.0.1",), access=AccessSettings(token=token)
    )
    prompts: list[str] = []
    with serve_in_thread(create_app(settings, renderer=lite_renderer)) as url, sync_playwright() as playwright:
        bot = Bot(url, token)
        bot.start()
        try:
            assert bot.started.wait(20), "the bot session did not start"
            context = launch(playwright, tmp_path / "profile", [])
            page = context.new_page()
            page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.dismiss()))
            page.goto(bot.viewer_url)
            page.wait_for_function("document.getElementById('connection-state').textContent === 'live'", timeout=20_000)
            context.close()
        finally:
            bot.stop.set()
            bot.join(timeout=30)

    assert "#token=" in bot.viewer_url
    assert prompts == []
