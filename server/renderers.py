"""Renderers by name. EchoMimic (torch, GPU weights) is imported only when asked for, so `lite` starts fast."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.settings import RENDERER_NAMES
from streaming.lite.renderer import LiteRenderer
from streaming.renderer import Renderer

if TYPE_CHECKING:
    from echomimic.progress import ProgressEvent

logger = logging.getLogger(__name__)

ECHOMIMIC_FPS = 24.0
"""The frame rate EchoMimic v1 was trained at."""


def create_renderer(name: str, fps: float | None, weights_dir: Path | None) -> Renderer[Any]:
    """Build the named renderer at `fps` (None: its own rate); `ValueError` with one line for the user when it
    cannot be built here."""
    if name == "lite":
        return LiteRenderer(fps=fps) if fps is not None else LiteRenderer()
    if name == "echomimic":
        folder = echomimic_weights_dir(weights_dir)
        from echomimic.streaming_renderer import EchoMimicRenderer

        return EchoMimicRenderer.from_weights(
            folder, fps=fps if fps is not None else ECHOMIMIC_FPS, progress=_log_loading_progress
        )
    raise ValueError(f"unknown renderer {name!r}; choose one of {', '.join(RENDERER_NAMES)}")


def echomimic_weights_dir(weights_dir: Path | None) -> Path:
    """The EchoMimic v1 weights folder the user named, if it exists; `ValueError` with one line for the user."""
    if weights_dir is None:
        raise ValueError("the echomimic renderer needs --weights DIR, the EchoMimic v1 weights folder")
    if not weights_dir.is_dir():
        raise ValueError(f"the EchoMimic weights folder {weights_dir} does not exist")
    return weights_dir


def _log_loading_progress(event: ProgressEvent) -> None:
    # Loading the real weights takes tens of seconds before the server binds its port: say where it is.
    logger.info("echomimic %s %d/%d %s", event.stage, event.done, event.total, event.detail)
