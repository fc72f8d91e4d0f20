"""The clients carry the token: the bot client (argument or `ECHOLIVE_TOKEN`), the adapters' link, and the bridge
(`--token`), against a real loopback server that wants one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapters.avatar_link import AvatarLink
from server.access_settings import TOKEN_ENVIRONMENT_VARIABLE, AccessSettings
from server.app import create_app
from server.bot_client import BotRefused, connect_bot
from server.bot_protocol import CloseCode
from server.cli import main
from server.settings import ServerSettings
from streaming.lite.renderer import LiteRenderer
from tests.server.live_server import serve_in_thread
from tests.streaming.signals import spoken, write_wav

TOKEN = "client-test-token-0123456789"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, lite_renderer: LiteRenderer) -> Iterator[str]:
    settings = ServerSettings(
        avatar_dir=tmp_path_factory.mktemp("clients") / "avatars",
        ice_host_addresses=("127.0.0.1",),
        access=AccessSettings(token=TOKEN),
    )
    with serve_in_thread(create_app(settings, renderer=lite_renderer)) as url:
        yield url


def ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/api/ws"


async def test_the_bot_client_sends_the_token_given_or_from_the_environment(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENVIRONMENT_VARIABLE, raising=False)
    with pytest.raises(BotRefused) as refused:
        async with connect_bot(ws(server_url), output="viewer"):
            pass
    assert refused.value.code == "token_required" and refused.value.close_code == CloseCode.UNAUTHORIZED
    async with connect_bot(ws(server_url), output="viewer", token=TOKEN) as bot:
        assert "#token=" in bot.started.viewer_url
    monkeypatch.setenv(TOKEN_ENVIRONMENT_VARIABLE, TOKEN)
    async with connect_bot(ws(server_url), output="viewer") as bot:
        assert bot.started.session_id


async def test_the_adapters_link_sends_its_token(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENVIRONMENT_VARIABLE, raising=False)
    link = await AvatarLink.open(ws(server_url), token=TOKEN)
    await link.aclose()
    with pytest.raises(BotRefused):
        await AvatarLink.open(ws(server_url))


def test_the_bridge_sends_its_token_and_says_what_to_do_without_one(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(TOKEN_ENVIRONMENT_VARIABLE, raising=False)
    microphone = write_wav(tmp_path / "hello.wav", spoken("Hello there.", 48_000).astype(np.float32), 48_000)
    bridge = ["bridge", "--server", server_url, "--mic", str(microphone), "--sink", str(tmp_path / "call.mp4")]
    assert main(bridge) == 1
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "--token" in said and "ECHOLIVE_TOKEN" in said
    assert main([*bridge, "--token", TOKEN, "--duration", "1"]) == 0, capsys.readouterr().err
