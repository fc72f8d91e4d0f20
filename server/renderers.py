"""Renderers by name. EchoMimic (torch, GPU weights) is imported only when asked for, so `lite` starts fast and
runs where torch is not installed (it is the `[echomimic]` extra)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.acceleration_options import AccelerationOptions
from server.settings import DEFAULT_SIZE, RENDERER_NAMES
from streaming.lite.eyelids import PortraitEyelids
from streaming.lite.renderer import LiteRenderer
from streaming.renderer import Renderer

if TYPE_CHECKING:
    from echomimic.progress import ProgressEvent

logger = logging.getLogger(__name__)

LITE_FPS = 25.0
ECHOMIMIC_FPS = 24.0
"""The frame rate EchoMimic v1 was trained at."""
ECHOMIMIC_PACKAGES = ("torch", "diffusers", "safetensors")
INSTALL_ECHOMIMIC = "pip install 'echomimic-live[echomimic]'"


def create_renderer(
    name: str,
    fps: float | None,
    weights_dir: Path | None,
    size: int | None = None,
    acceleration: AccelerationOptions | None = None,
) -> Renderer[Any]:
    """Build the named renderer at `fps` (None: its own rate) drawing `size`x`size` frames (None: 512 for lite, the
    profile's for echomimic); `ValueError` with one line for the user when it cannot be built here."""
    if name == "lite":
        side = size if size is not None else DEFAULT_SIZE
        return LiteRenderer(fps=fps if fps is not None else LITE_FPS, frame_size=(side, side))
    if name == "echomimic":
        folder = echomimic_weights_dir(weights_dir)
        require_echomimic_packages()
        from echomimic.streaming_renderer import EchoMimicRenderer

        options = acceleration if acceleration is not None else AccelerationOptions()
        profile = options.profile if size is None else replace(options.profile, size=size)
        return EchoMimicRenderer.from_weights(
            folder,
            profile=profile,
            taesd_dir=options.taesd_dir,
            backend=options.backend,
            engine_dir=options.engine_dir,
            channels_last=options.channels_last,
            fps=fps if fps is not None else ECHOMIMIC_FPS,
            eyelids=PortraitEyelids.find,
            progress=_log_loading_progress,
        )
    raise ValueError(f"unknown renderer {name!r}; choose one of {', '.join(RENDERER_NAMES)}")


def require_echomimic_packages() -> None:
    """`ValueError` naming what to install when the echomimic renderer's packages are missing."""
    missing = [package for package in ECHOMIMIC_PACKAGES if importlib.util.find_spec(package) is None]
    if missing:
        raise ValueError(f"the echomimic renderer needs {', '.join(missing)}: {INSTALL_ECHOMIMIC}")


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
