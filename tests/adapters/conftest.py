"""The adapter tests share the bot API tests' fixtures: a real server on loopback running `lite` (`server_url`,
one per test module), its renderer and mouth probe, and the speech a bot sends (`phrase`)."""

from tests.server.test_bot_api import phrase, probe, renderer, server_url

__all__ = ["phrase", "probe", "renderer", "server_url"]
