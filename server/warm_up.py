"""Rendering a few windows before the first session, so that its playout delay starts from a measured render time
(and, on a GPU, the first caller does not pay for kernel selection and memory pools)."""

from __future__ import annotations

import logging
from typing import TypeVar

import numpy as np

from server.timed_renderer import TimedRenderer
from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose
from streaming.renderer import RenderSession, WindowSpec
from streaming.windowing import frame_start_sample

logger = logging.getLogger(__name__)

AvatarT = TypeVar("AvatarT")

TIMED_WINDOWS = 3
"""Windows timed after the first, untimed one (which pays for every cold start)."""
HUM_LEVEL = 0.05


def warm_up(renderer: TimedRenderer[AvatarT], avatar: AvatarT) -> None:
    """Render one window of a voiced hum on `avatar` untimed, then `TIMED_WINDOWS` timed as sessions are."""
    logger.info("warming up %s: %d windows", renderer.name, 1 + TIMED_WINDOWS)
    _render_hum(renderer.inner.open_session(avatar), renderer.window, renderer.fps, windows=1)
    _render_hum(renderer.open_session(avatar), renderer.window, renderer.fps, windows=TIMED_WINDOWS)
    render, window = renderer.times.p95(), renderer.window.frames / renderer.fps
    logger.info(
        "%s renders a %d-frame window in %.1f ms (95th percentile of %d warm-up windows)",
        renderer.name,
        renderer.window.frames,
        render * 1000,
        TIMED_WINDOWS,
    )
    if render > window:
        logger.warning(
            "%s cannot keep up in real time here: a window of %.0f ms of video takes %.0f ms to render; "
            "speech frames will be dropped as late",
            renderer.name,
            window * 1000,
            render * 1000,
        )


def _render_hum(session: RenderSession, spec: WindowSpec, fps: float, windows: int) -> None:
    try:
        session.render_idle(0, [IdlePose()])
        for number in range(windows):
            first = spec.context + number * spec.frames
            start = frame_start_sample(first - spec.context, fps)
            end = frame_start_sample(first + spec.frames, fps) + round(spec.lookahead * SAMPLE_RATE)
            time = np.arange(start, end) / SAMPLE_RATE
            session.render_window(
                AudioWindow(
                    samples=(HUM_LEVEL * np.sin(2 * np.pi * 160 * time)).astype(np.float32),
                    start_time=start / SAMPLE_RATE,
                    fps=fps,
                    first_frame=first,
                    frame_count=spec.frames,
                    context_frames=spec.context,
                    lookahead=spec.lookahead,
                    poses=(IdlePose(),) * spec.frames,
                )
            )
    finally:
        session.close()
