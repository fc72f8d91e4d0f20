"""Settings and renderer choice fail at startup, with one line a user can act on."""

from __future__ import annotations

from pathlib import Path

import aioice.ice
import pytest

from server.app import create_app
from server.cli import main
from server.ice_addresses import restrict_ice_host_addresses
from server.renderers import create_renderer
from server.serve import run_server
from server.settings import ServerSettings
from streaming.lite.renderer import LiteRenderer


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"renderer": "magic"}, "unknown renderer 'magic'"),
        ({"port": 70_000}, "port must be between"),
        ({"fps": 0.0}, "fps must be between"),
        ({"max_sessions": 0}, "max sessions must be at least 1"),
        ({"admission_margin": 1.0}, "admission margin must be at least 0 and below 1"),
        ({"max_upload_bytes": 10}, "upload limit"),
        ({"playout_delay": -0.1}, "playout delay"),
        ({"media_timeout": 0.0}, "media timeout"),
        ({"max_ws_message_bytes": 10}, "WebSocket message limit"),
        ({"upload_rate": 0.0}, "upload rate must be positive"),
        ({"avatar_cache_size": 0}, "at least 1 avatar"),
        ({"avatar_cache_bytes": -1}, "must not be negative"),
    ],
)
def test_bad_settings_are_refused_with_a_message(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerSettings(**overrides)  # type: ignore[arg-type]


def test_lite_is_built_at_the_requested_rate() -> None:
    renderer = create_renderer("lite", 20.0, None)
    assert isinstance(renderer, LiteRenderer) and renderer.fps == 20.0
    assert create_renderer("lite", None, None).fps == LiteRenderer().fps


def test_echomimic_needs_a_weights_folder_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs --weights DIR"):
        create_app(ServerSettings(renderer="echomimic", avatar_dir=tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        create_renderer("echomimic", None, tmp_path / "missing")


def test_ice_can_be_kept_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    restrict_ice_host_addresses(("127.0.0.1", "::1"))
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    with pytest.raises(ValueError):
        restrict_ice_host_addresses(("not an address",))


def test_serve_fails_before_binding_a_port_when_the_renderer_cannot_be_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs --weights DIR"):
        run_server(ServerSettings(renderer="echomimic", avatar_dir=tmp_path))


def test_the_limits_come_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[ServerSettings] = []
    monkeypatch.setattr("server.serve.run_server", served.append)
    assert main(["serve", "--upload-rate", "3", "--avatar-cache-size", "5", "--avatar-cache-mb", "256"]) == 0
    assert (served[0].upload_rate, served[0].avatar_cache_size, served[0].avatar_cache_bytes) == (3, 5, 256 * 2**20)
