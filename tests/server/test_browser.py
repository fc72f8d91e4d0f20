"""The web client in a real browser: Debian's chromium, a fake microphone speaking a sentence, the lite renderer.

The page is driven as a person would: pick the avatar, press Start, watch, press Stop. The video the page
receives is sampled through a canvas in the page itself, and the avatar's mouth must open while the fake
microphone speaks and rest between sentences. A screenshot of the live page is kept in `test-artifacts/`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import BrowserContext, FilePayload, Page, sync_playwright

from bench.mouth_probe import MouthProbe
from server.access_settings import AccessSettings
from server.app import create_app
from server.settings import ServerSettings
from streaming.lite.renderer import LiteRenderer
from tests.server.live_server import serve_in_thread

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    # The server offers only a 127.0.0.1 candidate; chromium leaves loopback out of ICE unless told otherwise.
    "--allow-loopback-in-peer-connection",
]
FAKE_MICROPHONE_FLAGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
SAMPLES = 90
SAMPLE_INTERVAL_MS = 100
OPEN_MOUTH = 0.04
"""Share of dark pixels in the mouth box above which the mouth is open (the closed mouth has about 0.01)."""
CLOSED_MOUTH = 0.02

SAMPLE_MOUTH_JS = """
([x, y, width, height]) => {
  const video = document.getElementById("avatar-video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(video, 0, 0);
  return Array.from(context.getImageData(x, y, width, height).data);
}
"""


@pytest.fixture
def server_url(tmp_path: Path, lite_renderer: LiteRenderer) -> Iterator[str]:
    settings = ServerSettings(
        avatar_dir=tmp_path / "avatars", ice_host_addresses=("127.0.0.1",), max_sessions=1, media_timeout=5.0
    )
    with serve_in_thread(create_app(settings, renderer=lite_renderer)) as url:
        yield url


def launch(playwright: Any, profile: Path, extra_flags: list[str]) -> BrowserContext:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium); the browser tests drive Debian's chromium")
    context: BrowserContext = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_FLAGS, *extra_flags],
        viewport={"width": 1200, "height": 760},
    )
    return context


def start_session(page: Page) -> None:
    page.wait_for_selector(".avatar[aria-checked='true']")
    page.click("#start-button")


def test_the_avatar_speaks_with_the_fake_microphone(
    server_url: str, speech_wav: Path, mouth_probe: MouthProbe, tmp_path: Path
) -> None:
    microphone = [*FAKE_MICROPHONE_FLAGS, f"--use-file-for-fake-audio-capture={speech_wav}"]
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path / "profile", microphone)
        page = context.new_page()
        page.goto(server_url)
        start_session(page)
        page.wait_for_function("document.getElementById('connection-state').textContent === 'live'", timeout=20_000)
        page.wait_for_function("document.getElementById('avatar-video').currentTime > 0.5", timeout=20_000)

        box = [mouth_probe.x, mouth_probe.y, mouth_probe.width, mouth_probe.height]
        openness = []
        for _ in range(SAMPLES):
            pixels = np.array(page.evaluate(SAMPLE_MOUTH_JS, box), dtype=np.uint8)
            openness.append(mouth_probe.openness(pixels.reshape(mouth_probe.height, mouth_probe.width, 4)[:, :, :3]))
            page.wait_for_timeout(SAMPLE_INTERVAL_MS)

        stats = {name: page.text_content(f"#stat-{name}") for name in ("fps", "latency", "rtt", "video")}
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_session.png"))

        page.click("#stop-button")
        page.wait_for_function("document.getElementById('connection-state').textContent === 'ended'")
        page.wait_for_function(
            "fetch('/api/sessions').then(r => r.json()).then(body => body.sessions.length === 0)", timeout=10_000
        )
        context.close()

    opened = [value for value in openness if value > OPEN_MOUTH]
    rested = [value for value in openness if value < CLOSED_MOUTH]
    assert len(opened) >= 5, f"the mouth should open while the microphone speaks: {np.round(openness, 3)}"
    assert len(rested) >= 5, f"the mouth should rest between sentences: {np.round(openness, 3)}"
    assert stats["video"] is not None and "512×512" in stats["video"], stats
    assert stats["fps"] is not None and stats["fps"].endswith("fps"), stats
    assert stats["rtt"] is not None and stats["rtt"].endswith("ms"), stats


def test_the_page_explains_a_refused_session_and_a_refused_upload(server_url: str, tmp_path: Path) -> None:
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path / "profile", FAKE_MICROPHONE_FLAGS)
        first, second = context.new_page(), context.new_page()
        for page in (first, second):
            page.goto(server_url)
            start_session(page)
            page.wait_for_selector("#message:not([hidden]), #connection-state[data-state='live']", timeout=20_000)

        refused = second.text_content("#message")
        not_an_image = FilePayload(name="notes.png", mimeType="image/png", buffer=b"not really a picture")
        second.set_input_files("#avatar-upload", files=[not_an_image])
        second.wait_for_function("document.getElementById('message').textContent.startsWith('Upload refused')")
        upload_refused = second.text_content("#message")
        context.close()

    assert refused is not None and "server is full" in refused and "Try again" in refused
    assert upload_refused is not None and "PNG or JPEG" in upload_refused


def test_with_a_token_the_page_asks_for_it_once_keeps_it_for_the_tab_and_hangs_up_with_the_secret(
    tmp_path: Path, lite_renderer: LiteRenderer
) -> None:
    """The token is given the way a person gives it: answering the page's prompt (Playwright's dialog handler)."""
    token = "browser-test-token-0123456789"
    settings = ServerSettings(
        avatar_dir=tmp_path / "avatars",
        ice_host_addresses=("127.0.0.1",),
        media_timeout=5.0,
        access=AccessSettings(token=token),
    )
    prompts: list[str] = []

    def answer(dialog: Any) -> None:
        prompts.append(dialog.message)
        dialog.accept(token)

    with serve_in_thread(create_app(settings, renderer=lite_renderer)) as url, sync_playwright() as playwright:
        context = launch(playwright, tmp_path / "profile", FAKE_MICROPHONE_FLAGS)
        page = context.new_page()
        page.on("dialog", answer)
        page.goto(url)
        page.wait_for_function("document.querySelector('.avatar img') && document.querySelector('.avatar img').src")
        page.reload()
        start_session(page)
        page.wait_for_function("document.getElementById('connection-state').textContent === 'live'", timeout=20_000)
        share_link = page.get_attribute("#share-link", "href")
        page.click("#stop-button")
        page.wait_for_function("document.getElementById('connection-state').textContent === 'ended'")
        count_sessions = f"fetch('/api/sessions', {{headers: {{Authorization: 'Bearer {token}'}}}}).then(r => r.json())"
        page.wait_for_function(f"{count_sessions}.then(body => body.sessions.length === 0)", timeout=10_000)
        context.close()

    assert len(prompts) == 1 and "access token" in prompts[0]
    assert share_link is not None and "/watch/" in share_link and "#token=" in share_link


def test_the_page_explains_a_denied_microphone(server_url: str, tmp_path: Path) -> None:
    with sync_playwright() as playwright:
        # No fake-UI flag: the permission prompt cannot be answered, so the browser denies the microphone.
        context = launch(playwright, tmp_path / "profile", ["--use-fake-device-for-media-stream"])
        page = context.new_page()
        page.goto(server_url)
        start_session(page)
        page.wait_for_selector("#message:not([hidden])", timeout=20_000)
        message = page.text_content("#message")
        state = page.text_content("#connection-state")
        context.close()

    assert message is not None and "Microphone access was denied" in message
    assert state == "idle"
