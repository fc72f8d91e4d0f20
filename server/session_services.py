"""One server's session machinery, built once from its settings: the renderer (timed), the avatar store and its
cache, admission, the render governor, access, signalling for WebRTC, the bot gateway and the metrics they all
report to.

The single-process app (`server.app`) puts HTTP routes in front of it; a cluster worker replica
(`server.cluster.worker`) builds the same machinery and serves sessions that a Ray Serve ingress places on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from aiortc import RTCPeerConnection
from starlette.websockets import WebSocket

from server.access_control import AccessPolicy
from server.admission import AdmissionPolicy
from server.avatar_cache import AvatarCache, avatar_measure
from server.avatars import AvatarStore
from server.bot_gateway import BotGateway
from server.bot_protocol import Start
from server.bot_session import BotSession
from server.ice_addresses import restrict_ice_host_addresses
from server.metrics import ServerMetrics
from server.render_times import RenderTimes
from server.renderers import create_renderer
from server.session import Session
from server.session_core import SessionConfig
from server.session_registry import SessionRegistry
from server.settings import ServerSettings
from server.signalling import Signalling
from server.timed_renderer import TimedRenderer
from server.warm_up import warm_up
from streaming.clock import Clock, MonotonicClock
from streaming.render_governor import RenderGovernor
from streaming.renderer import Renderer


@dataclass(frozen=True)
class SessionServices:
    renderer_name: str
    frame_rate: float
    clock: Clock
    metrics: ServerMetrics
    avatars: AvatarStore[object]
    registry: SessionRegistry
    access: AccessPolicy
    signalling: Signalling
    bots: BotGateway


def build_session_services(
    settings: ServerSettings,
    *,
    renderer: Renderer[Any] | None = None,
    clock: Clock | None = None,
    access_key: bytes | None = None,
) -> SessionServices:
    """Everything that can fail on bad settings (renderer, weights, the startup avatar and its face) fails here
    with a `ValueError`. `renderer` and `clock` replace the built-in ones (tests pass fakes); `access_key` signs
    viewer tokens and hang-up secrets (None: a random key of this process; a cluster shares one)."""
    metrics = ServerMetrics()
    built = (
        renderer
        if renderer is not None
        else create_renderer(
            settings.renderer, settings.fps, settings.weights_dir, settings.size, settings.acceleration
        )
    )
    render_times = RenderTimes()
    timed_renderer = TimedRenderer(built, metrics.render_seconds, render_times)
    frame_rate = settings.fps if settings.fps is not None else built.fps
    policy = AdmissionPolicy.for_renderer(
        built, render_times, frame_rate, settings.max_sessions, settings.admission_margin
    )
    registry = SessionRegistry(policy, metrics)
    avatar_cache: AvatarCache[object] = AvatarCache(
        settings.avatar_cache_size,
        settings.avatar_cache_bytes,
        avatar_measure(built),
        keep=lambda: {avatars.default_name, *(session.avatar_name for session in registry.sessions())},
        metrics=metrics,
    )
    avatars: AvatarStore[object] = AvatarStore(
        settings.avatar_dir, timed_renderer.prepare_avatar, settings.max_upload_bytes, avatar_cache, settings.avatar
    )
    warm_up(timed_renderer, avatars.prepare_default())
    if settings.ice_host_addresses:
        restrict_ice_host_addresses(settings.ice_host_addresses)
    session_clock = clock if clock is not None else MonotonicClock()
    governor = RenderGovernor(session_clock)
    timed_renderer.on_render = lambda _: governor.observe(registry.utilisation())
    metrics.render_utilisation.set_function(registry.utilisation)
    metrics.sessions_degraded.set_function(lambda: sum(session.degraded for session in registry.sessions()))
    session_config = SessionConfig(
        fps=settings.fps,
        playout_delay=settings.playout_delay,
        echo_audio=settings.echo_audio,
        media_timeout=settings.media_timeout,
        governor=governor,
    )

    def new_session(session_id: str, avatar_name: str, peer: RTCPeerConnection, avatar: object) -> Session:
        return Session(
            session_id,
            avatar_name,
            peer,
            timed_renderer,
            avatar,
            replace(session_config, render_seconds=timed_renderer.times.p95()),
            metrics,
            session_clock,
            on_closed=registry.discard,
        )

    def new_bot_session(
        session_id: str, avatar_name: str, avatar: object, socket: WebSocket, start: Start, viewer_url: str
    ) -> BotSession:
        return BotSession(
            session_id,
            avatar_name,
            timed_renderer,
            avatar,
            replace(session_config, render_seconds=timed_renderer.times.p95()),
            metrics,
            session_clock,
            registry.discard,
            socket,
            start,
            viewer_url,
        )

    access = AccessPolicy(settings.access, clock, key=access_key)
    return SessionServices(
        renderer_name=built.name,
        frame_rate=frame_rate,
        clock=session_clock,
        metrics=metrics,
        avatars=avatars,
        registry=registry,
        access=access,
        signalling=Signalling(registry, avatars, new_session, settings.max_viewers, access, settings.ice_servers),
        bots=BotGateway(registry, avatars, new_bot_session, metrics, access),
    )
