"""STUN and TURN servers, configured once: the server's peer connections gather through them, and the page gets the
same list (`GET /api/config`) for its own. Without any, both sides offer host candidates only, which reach each
other on one network but rarely through NAT.

Configured on the command line (`--ice-server URL`, repeatable, with `--turn-username/--turn-credential` for the
TURN ones) or from a JSON file holding a list in the browser's RTCIceServer shape:
`[{"urls": "stun:stun.example.org"}, {"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"}]`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

_ICE_URL = re.compile(
    r"^(?P<scheme>stuns?|turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$"
)
ICE_GATHERING_TIMEOUT = 4.0
"""Seconds the page waits for its candidates before it sends the offer with those it has (an unreachable STUN
server must not hang a call)."""


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in self.urls:
            match = _ICE_URL.match(url)
            if match is None:
                raise ValueError(
                    f"{url!r} is not an ICE server URL: use stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp|tcp] "
                    "(or stuns:, turns:)"
                )
            if match["scheme"].startswith("turn") and (not self.username or not self.credential):
                raise ValueError(f"the TURN server {url} needs a username and a credential")

    def browser_shape(self) -> dict[str, Any]:
        """The RTCIceServer dictionary a browser's RTCPeerConnection takes."""
        shape: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            shape["username"] = self.username
            shape["credential"] = self.credential
        return shape


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a page needs before it calls: the ICE servers (RTCIceServer dictionaries) and how long to gather."""

    ice_servers: list[dict[str, Any]]
    ice_gathering_timeout: float


def client_config(servers: tuple[IceServer, ...]) -> ClientConfig:
    return ClientConfig([server.browser_shape() for server in servers], ICE_GATHERING_TIMEOUT)


def rtc_configuration(servers: tuple[IceServer, ...]) -> RTCConfiguration:
    """The configuration every server-side peer connection is made with."""
    return RTCConfiguration(
        iceServers=[RTCIceServer(list(server.urls), server.username, server.credential) for server in servers]
    )


def ice_servers_from_urls(urls: list[str], username: str | None, credential: str | None) -> tuple[IceServer, ...]:
    """One server per `--ice-server`; the TURN ones take `--turn-username` and `--turn-credential`."""
    servers = []
    for url in urls:
        turn = url.startswith("turn")
        servers.append(IceServer((url,), username if turn else None, credential if turn else None))
    return tuple(servers)


def load_ice_servers(path: Path) -> tuple[IceServer, ...]:
    """The servers in a JSON file (a list of RTCIceServer dictionaries); `ValueError` naming the file otherwise."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the ICE configuration {path}: {error}") from error
    if not isinstance(entries, list):
        raise ValueError(f"{path} must hold a JSON list of ICE servers ({{'urls': ..., 'username', 'credential'}})")
    servers = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("urls"), str | list):
            raise ValueError(f"{path}: ICE server {number} must be an object with 'urls' (a string or a list)")
        urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
        username, credential = entry.get("username"), entry.get("credential")
        if not all(isinstance(url, str) for url in urls) or not all(
            value is None or isinstance(value, str) for value in (username, credential)
        ):
            raise ValueError(f"{path}: ICE server {number}'s urls, username and credential must be strings")
        try:
            servers.append(IceServer(tuple(urls), username, credential))
        except ValueError as error:
            raise ValueError(f"{path}: ICE server {number}: {error}") from error
    return tuple(servers)
