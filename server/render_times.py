"""Recent render times, shared by every session of a server: the render part of a new session's playout delay is
the 95th percentile of whole windows, so the delay follows what this machine and this load actually take; and
admission (`server.admission`) weighs the 95th percentile of the time per frame, by call kind."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence

KEPT = 200
"""Windows remembered: at a few windows a second, the last minute or so of load."""


class RenderTimes:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._seconds: deque[float] = deque(maxlen=kept)
        self._per_frame: dict[str, deque[float]] = {}  # by call kind: seconds per frame drawn
        self._cpu_per_frame: dict[str, deque[float]] = {}  # by call kind: CPU seconds per frame drawn
        self._lock = threading.Lock()  # written from render threads, read on the event loop

    def add(self, seconds: float) -> None:
        """A whole window's render time."""
        with self._lock:
            self._seconds.append(seconds)

    def add_call(self, kind: str, seconds: float, frames: int, cpu_seconds: float | None = None) -> None:
        """Any render call of `kind` ("window" or "idle") that drew `frames` frames (none: nothing to learn), in
        `seconds` of wall time, of which the rendering thread spent `cpu_seconds` on a core (None: all of it)."""
        if frames < 1:
            return
        cpu = seconds if cpu_seconds is None else cpu_seconds
        with self._lock:
            self._per_frame.setdefault(kind, deque(maxlen=self._kept)).append(seconds / frames)
            self._cpu_per_frame.setdefault(kind, deque(maxlen=self._kept)).append(cpu / frames)

    def p95_per_frame(self, cpu: bool = False) -> dict[str, float]:
        """By call kind, the 95th percentile of the seconds per frame drawn (`cpu`: CPU seconds of the rendering
        thread); kinds never called are absent."""
        with self._lock:
            series = self._cpu_per_frame if cpu else self._per_frame
            kept = {kind: list(seconds) for kind, seconds in series.items()}
        return {kind: percentile(seconds, 0.95) for kind, seconds in kept.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._seconds)

    def p95(self) -> float:
        """The 95th percentile of the times kept; 0 before any window was rendered."""
        with self._lock:
            kept = list(self._seconds)
        return percentile(kept, 0.95)


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` quantile of `values` by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]
