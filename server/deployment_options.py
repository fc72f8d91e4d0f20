"""The options of `serve` that decide who reaches the server and how: the token, `--insecure`, CORS origins,
viewer links, TLS, and the ICE servers. Parsed here into the settings objects they configure."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from server.access_settings import (
    DEFAULT_VIEWER_LINK_LIFETIME,
    TOKEN_ENVIRONMENT_VARIABLE,
    AccessSettings,
    token_from_environment,
)
from server.ice_servers import IceServer, ice_servers_from_urls, load_ice_servers
from server.tls import TlsSettings


@dataclass(frozen=True, slots=True)
class DeploymentOptions:
    access: AccessSettings
    tls: TlsSettings
    ice_servers: tuple[IceServer, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DeploymentOptions:
        """From a namespace parsed with `add_deployment_options`; `ValueError` for a bad value."""
        if args.ice_config is not None and args.ice_server:
            raise ValueError("give the ICE servers with --ice-server or in --ice-config, not both")
        ice_servers = (
            load_ice_servers(args.ice_config)
            if args.ice_config is not None
            else ice_servers_from_urls(args.ice_server, args.turn_username, args.turn_credential)
        )
        access = AccessSettings(
            token=args.token or token_from_environment(),
            insecure=args.insecure,
            cors_origins=tuple(args.cors_origin),
            viewer_link_lifetime=args.viewer_link_lifetime,
        )
        tls = TlsSettings(cert=args.tls_cert, key=args.tls_key, self_signed=args.tls_self_signed)
        return cls(access, tls, ice_servers)


def add_deployment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=None,
        help=f"require this bearer token on the API and the bot WebSocket (default: ${TOKEN_ENVIRONMENT_VARIABLE}, "
        "which keeps it out of the process list; without one the server listens on loopback only)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow a --host beyond this machine without a token (anyone may call)"
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from this origin (https://app.example) call the API (repeatable; default: none)",
    )
    parser.add_argument(
        "--viewer-link-lifetime",
        type=float,
        default=DEFAULT_VIEWER_LINK_LIFETIME,
        metavar="SECONDS",
        help="how long a session's watch link works (default %(default).0f)",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="FILE", help="serve https with this certificate")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="FILE", help="the certificate's private key")
    parser.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="serve https with a certificate made for this machine's names (kept and reused; its SHA-256 is printed)",
    )
    parser.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN or TURN server (stun:host:3478, turn:host:3478?transport=udp) for the server and the page "
        "(repeatable)",
    )
    parser.add_argument("--turn-username", default=None, help="the username for the --ice-server turn: URLs")
    parser.add_argument("--turn-credential", default=None, help="the credential for the --ice-server turn: URLs")
    parser.add_argument(
        "--ice-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a JSON list of RTCIceServer objects ({urls, username, credential}) instead of --ice-server",
    )
