"""The adapter tests share the server tests' fixtures: a real server on loopback running `lite` (`server_url`, one
per test module), its renderer and mouth probe, and the speech a bot sends (`phrase`)."""

from tests.server.conftest import lite_renderer, mouth_probe
from tests.server.test_bot_api import phrase, server_url

__all__ = ["lite_renderer", "mouth_probe", "phrase", "server_url"]
