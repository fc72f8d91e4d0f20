"""Everything a running server is configured with, checked once at construction so a bad value fails at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from server.acceleration_options import AccelerationOptions
from server.access_settings import AccessSettings
from server.ice_servers import IceServer
from server.tls import TlsSettings

RENDERER_NAMES = ("lite", "echomimic")
DEFAULT_SIZE = 512
"""Renderers `echolive serve --renderer` accepts: `lite` (CPU, always available) and `echomimic` (needs weights)."""

WEB_CLIENT_DIR = Path(__file__).resolve().parents[1] / "web_client"


def default_avatar_dir() -> Path:
    """Uploaded portraits outlive the server process, so they go to the user's data directory."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "echolive" / "avatars"


@dataclass(frozen=True)
class ServerSettings:
    """How `echolive serve` runs. Times are in seconds, sizes in bytes."""

    host: str = "127.0.0.1"
    port: int = 8080
    renderer: str = "lite"
    avatar: str | None = None
    """The avatar sessions start with: a name from the avatar list or a path to a PNG/JPEG; None for the bundled one."""
    weights_dir: Path | None = None
    """EchoMimic v1 weights folder; required by the `echomimic` renderer."""
    fps: float | None = None
    """Video frame rate; None takes the renderer's own."""
    size: int | None = None
    """Frames are `size` x `size` pixels; None: 512 for lite, the profile's size for echomimic."""
    acceleration: AccelerationOptions = field(default_factory=AccelerationOptions)
    """EchoMimic's profile, tiny decoder, UNet backend and engine folder."""
    max_sessions: int = 4
    """Sessions at once, WebRTC callers and bots together: a hard cap on top of admission by measured headroom."""
    admission_margin: float = 0.2
    """Share of the renderer's parallel capacity admission keeps free (see `server.admission`)."""
    max_viewers: int = 16
    """People watching one session at once; each costs a video encoder."""
    avatar_dir: Path = field(default_factory=default_avatar_dir)
    max_upload_bytes: int = 8 * 1024 * 1024
    max_ws_message_bytes: int = 4 * 1024 * 1024
    """One bot WebSocket message at most; a larger one closes the connection with 1009."""
    upload_rate: float = 10.0
    """Avatar uploads one client address may make per minute (a burst of as many, then one every 60/N s)."""
    avatar_cache_size: int = 32
    """Prepared avatars kept in memory at most, least recently used first out (live sessions keep theirs)."""
    avatar_cache_bytes: int = 1024 * 1024 * 1024
    """Bytes the kept avatars may hold, host and GPU memory together, as the renderer counts them."""
    echo_audio: bool = True
    """Send the caller's voice back, delayed like the video, so a recording or a viewer gets both in sync."""
    playout_delay: float | None = None
    """Seconds frames are sent behind the stream's clock: the budget for jitter, windowing and rendering. None: the
    stream's own pipeline delay plus a render allowance (see `server.session`)."""
    media_timeout: float = 10.0
    """A session whose microphone sends nothing for this long is taken as gone (a closed tab, a dead network)."""
    ice_host_addresses: tuple[str, ...] = ()
    """Gather ICE host candidates only on these local addresses (e.g. 127.0.0.1 for loopback-only use); empty for
    every interface, the standard behaviour."""
    web_client_dir: Path = WEB_CLIENT_DIR
    access: AccessSettings = field(default_factory=AccessSettings)
    """The token, viewer links, CORS origins; without a token the server may listen on loopback only."""
    tls: TlsSettings = field(default_factory=TlsSettings)
    ice_servers: tuple[IceServer, ...] = ()
    """STUN and TURN servers for the server's peer connections and the page's."""

    def __post_init__(self) -> None:
        if self.renderer not in RENDERER_NAMES:
            raise ValueError(f"unknown renderer {self.renderer!r}; choose one of {', '.join(RENDERER_NAMES)}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be between 0 (any free port) and 65535, not {self.port}")
        if self.size is not None:
            check_frame_size(self.size)
        if self.fps is not None and not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be between 1 and 60, not {self.fps}")
        if self.max_sessions < 1:
            raise ValueError(f"max sessions must be at least 1, not {self.max_sessions}")
        if not 0 <= self.admission_margin < 1:
            raise ValueError(f"the admission margin must be at least 0 and below 1, not {self.admission_margin}")
        if self.max_viewers < 0:
            raise ValueError(f"max viewers must not be negative, not {self.max_viewers}")
        if self.max_upload_bytes < 1024:
            raise ValueError(f"the upload limit must be at least 1 KiB, not {self.max_upload_bytes} bytes")
        if self.max_ws_message_bytes < 1024:
            raise ValueError(f"the WebSocket message limit must be at least 1 KiB, not {self.max_ws_message_bytes}")
        if self.upload_rate <= 0:
            raise ValueError(f"the upload rate must be positive (uploads per minute), not {self.upload_rate}")
        if self.avatar_cache_size < 1:
            raise ValueError(f"the avatar cache must keep at least 1 avatar, not {self.avatar_cache_size}")
        if self.avatar_cache_bytes < 0:
            raise ValueError(f"the avatar cache size in bytes must not be negative, not {self.avatar_cache_bytes}")
        if self.playout_delay is not None and not 0 <= self.playout_delay <= 2:
            raise ValueError(f"playout delay must be between 0 and 2 seconds, not {self.playout_delay}")
        if self.media_timeout <= 0:
            raise ValueError(f"media timeout must be positive, not {self.media_timeout}")
        self.access.check_host(self.host)


def check_frame_size(size: int) -> None:
    """Both renderers draw square frames whose side is a multiple of 8 (EchoMimic's latents are 1/8 the size)."""
    if size % 8 or not 64 <= size <= 2048:
        raise ValueError(f"size must be a multiple of 8 between 64 and 2048, not {size}")
