"""The Prometheus metrics one server exposes at `/metrics`, kept in a registry of its own so apps never share."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
RENDER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions_active = Gauge(
            "echolive_sessions_active", "Sessions currently streaming.", registry=self.registry
        )
        self.sessions_started = Counter(
            "echolive_sessions_started", "Sessions admitted since the server started.", registry=self.registry
        )
        self.sessions_rejected = Counter(
            "echolive_sessions_rejected", "Offers refused because the server was full.", registry=self.registry
        )
        self.admission_refusals = Counter(
            "echolive_admission_refusals",
            "Sessions refused, by reason: server_full (--max-sessions), no_headroom (render time), no_device_memory.",
            ["reason"],
            registry=self.registry,
        )
        self.render_utilisation = Gauge(
            "echolive_render_utilisation",
            "Load of the live sessions drawing every frame: render lane-seconds needed per second (95th percentile "
            "of recent render time per frame) over the lanes they can use; above 1 they fall behind real time. "
            "Headroom is 1 minus it.",
            registry=self.registry,
        )
        self.sessions_degraded = Gauge(
            "echolive_sessions_degraded",
            "Sessions drawing new windows at a lower frame rate (each frame shown twice) under overload.",
            registry=self.registry,
        )
        self.sessions_ended = Counter(
            "echolive_sessions_ended", "Sessions that ended, by why.", ["reason"], registry=self.registry
        )
        self.session_fps = Gauge(
            "echolive_session_fps",
            "Video frames sent per second over the last second.",
            ["session"],
            registry=self.registry,
        )
        self.frames_sent = Counter("echolive_frames_sent", "Video frames sent to clients.", registry=self.registry)
        self.frames_dropped = Counter(
            "echolive_frames_dropped", "Rendered frames skipped because they were already late.", registry=self.registry
        )
        self.frames_repeated = Counter(
            "echolive_frames_repeated", "Frames shown again because the next one was not ready.", registry=self.registry
        )
        self.interrupts = Counter(
            "echolive_interrupts", "Barge-ins: a session told to drop what it had queued.", registry=self.registry
        )
        self.viewers_active = Gauge(
            "echolive_viewers_active", "People watching a session over WebRTC.", registry=self.registry
        )
        self.slow_reader_dropped = Counter(
            "echolive_slow_reader_dropped",
            "Media messages a WebSocket client did not read in time and that were dropped, by kind (video or audio).",
            ["kind"],
            registry=self.registry,
        )
        self.protocol_errors = Counter(
            "echolive_protocol_errors",
            "Bot WebSocket messages refused, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.render_seconds = Histogram(
            "echolive_render_seconds",
            "Time the renderer took per call, by call kind (window or idle).",
            ["kind"],
            buckets=RENDER_BUCKETS,
            registry=self.registry,
        )
        self.end_to_end_latency = Histogram(
            "echolive_end_to_end_latency_seconds",
            "From the audio a frame depicts arriving at the server to that frame being sent.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.avatar_cache_avatars = Gauge(
            "echolive_avatar_cache_avatars", "Prepared avatars kept in memory.", registry=self.registry
        )
        self.avatar_cache_bytes = Gauge(
            "echolive_avatar_cache_bytes",
            "Memory the kept avatars hold, by where (host, or device: the GPU).",
            ["memory"],
            registry=self.registry,
        )
        self.avatar_cache_evictions = Counter(
            "echolive_avatar_cache_evictions",
            "Prepared avatars dropped from the cache to stay within its bounds.",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
