"""Progress reports for long work (loading weights, denoising, decoding), so a caller can draw a bar per stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """`done` of `total` units of `stage` are finished; `detail` names the unit just finished (a file, a step)."""

    stage: str
    done: int
    total: int
    detail: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


def report(progress: ProgressCallback | None, stage: str, done: int, total: int, detail: str = "") -> None:
    """Send one event when someone listens."""
    if progress is not None:
        progress(ProgressEvent(stage, done, total, detail))
