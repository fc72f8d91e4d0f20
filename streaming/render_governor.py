"""Degrade before stutter: under transient overload, new windows are drawn at a lower frame rate.

The server measures its load (the render time per frame it has measured, times the frames per second its sessions
ask for, over what the renderer can run at once) and feeds it here with `observe()`. Above `degrade_above` (1: the
renderer cannot draw every frame in real time any more) the governor asks streams for a frame stride of
`degraded_stride`: they draw only every second frame of each new window (and every second idle pose) and show each
drawn frame twice, so the output keeps its negotiated frame rate, its timestamps and its voice, and no frame is late.
Full rate returns once the load has stayed below `recover_below` for `recover_after` seconds of the clock; the gap
between the two thresholds and the hold keep a load that hovers near the limit from flapping between the two.

Only renderers whose frames can honestly be thinned offer it (`WindowSpec.max_frame_stride`): `lite` draws each frame
from its own audio and pose, so leaving one out changes nothing else. EchoMimic's windows are fixed at its trained
rate (its motion module relates frames 1/24 s apart), so it never degrades this way: admission keeps it in real time,
and a window that is late anyway is dropped by the pacer as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from streaming.clock import Clock


@dataclass(frozen=True, slots=True)
class GovernorSettings:
    degrade_above: float = 1.0
    """Load (render seconds needed per second, over the renderer's parallel capacity) above which frames thin."""
    recover_below: float = 0.8
    """Load under which full rate may return."""
    recover_after: float = 3.0
    """Seconds the load must stay under `recover_below` before full rate returns."""
    degraded_stride: int = 2
    """Draw every this-many-th frame while degraded."""

    def __post_init__(self) -> None:
        if not 0 < self.recover_below <= self.degrade_above:
            raise ValueError(
                f"recover_below ({self.recover_below}) must be positive and at most degrade_above "
                f"({self.degrade_above})"
            )
        if self.recover_after < 0 or self.degraded_stride < 2:
            raise ValueError("recover_after must not be negative and degraded_stride must be at least 2")


class RenderGovernor:
    """Decides the frame stride new windows are drawn at, from the load the server observes; one per renderer,
    shared by its streams."""

    def __init__(self, clock: Clock, settings: GovernorSettings | None = None) -> None:
        self.settings = settings if settings is not None else GovernorSettings()
        self._clock = clock
        self._stride = 1
        self._calm_since: float | None = None
        self.load = 0.0
        """The load observed last."""

    @property
    def frame_stride(self) -> int:
        """1 at full rate; `degraded_stride` while degraded."""
        return self._stride

    @property
    def degraded(self) -> bool:
        return self._stride > 1

    def observe(self, load: float) -> None:
        """The load now: 1 means the renderer is busy all the time drawing every frame at full rate. The server
        calls it after each render call, from render threads; streams only read the stride, one attribute."""
        self.load = load
        settings = self.settings
        if load > settings.degrade_above:
            self._stride = settings.degraded_stride
            self._calm_since = None
            return
        if not self.degraded:
            return
        if load >= settings.recover_below:
            self._calm_since = None
            return
        now = self._clock.now()
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since >= settings.recover_after:
            self._stride = 1
            self._calm_since = None
