"""Renderers by name. EchoMimic (torch, GPU weights) is imported only when asked for, so `lite` starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streaming.lite.renderer import LiteRenderer
from streaming.renderer import Renderer


def create_renderer(name: str, fps: float | None, weights_dir: Path | None) -> Renderer[Any]:
    """Build the named renderer; `ValueError` with one line for the user when it cannot be built here."""
    if name == "lite":
        return LiteRenderer(fps=fps) if fps is not None else LiteRenderer()
    if name == "echomimic":
        return _echomimic_renderer(fps, weights_dir)
    raise ValueError(f"unknown renderer {name!r}; choose lite or echomimic")


def _echomimic_renderer(fps: float | None, weights_dir: Path | None) -> Renderer[Any]:
    if weights_dir is None:
        raise ValueError("the echomimic renderer needs --weights DIR, the EchoMimic v1 weights folder")
    if not weights_dir.is_dir():
        raise ValueError(f"the EchoMimic weights folder {weights_dir} does not exist")
    from echomimic.streaming_renderer import EchoMimicRenderer

    if fps is not None:
        return EchoMimicRenderer.from_weights(weights_dir, fps=fps)
    return EchoMimicRenderer.from_weights(weights_dir)
