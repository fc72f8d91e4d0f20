"""Who may use a server: its bearer token, how long viewer links last, the origins a browser may call it from, and
whether it may listen beyond this machine without a token. Checked once, at construction."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

TOKEN_ENVIRONMENT_VARIABLE = "ECHOLIVE_TOKEN"
"""Where `serve`, the bridge, the bot client and the adapters look for the token when none is given."""
MIN_TOKEN_LENGTH = 16
DEFAULT_VIEWER_LINK_LIFETIME = 6 * 3600.0


def token_from_environment() -> str | None:
    """The token in `ECHOLIVE_TOKEN`, or None when it is unset or empty."""
    return os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None


@dataclass(frozen=True, slots=True)
class AccessSettings:
    token: str | None = None
    """Every API call and the bot WebSocket must present it (`Authorization: Bearer`); None leaves the server open
    to whoever can reach it, which is why it then listens on loopback only."""
    insecure: bool = False
    """Allow listening beyond loopback without a token."""
    cors_origins: tuple[str, ...] = ()
    """Origins (`https://app.example`) whose pages may call the API; none by default."""
    viewer_link_lifetime: float = DEFAULT_VIEWER_LINK_LIFETIME
    """Seconds a viewer link works after it was handed out."""

    def __post_init__(self) -> None:
        if self.token is not None and (len(self.token) < MIN_TOKEN_LENGTH or not self.token.isprintable()):
            raise ValueError(
                f"the token must be at least {MIN_TOKEN_LENGTH} printable characters "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        if self.token is not None and any(character.isspace() for character in self.token):
            raise ValueError("the token must not contain spaces")
        for origin in self.cors_origins:
            if not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin or origin.count("/") > 2:
                raise ValueError(f"a CORS origin is a scheme and a host, like https://app.example, not {origin!r}")
        if not 60 <= self.viewer_link_lifetime <= 30 * 24 * 3600:
            raise ValueError(
                f"viewer links must last between 60 seconds and 30 days, not {self.viewer_link_lifetime} s"
            )

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def check_host(self, host: str) -> None:
        """Refuse to listen beyond this machine with nothing guarding the API, unless told to."""
        if self.token is None and not self.insecure and not is_loopback(host):
            raise ValueError(
                f"--host {host} would let anyone on the network use this server: give a --token "
                f"(or set {TOKEN_ENVIRONMENT_VARIABLE}), or pass --insecure"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
