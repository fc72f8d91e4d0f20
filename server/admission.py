"""Admission from measured headroom: one more session is admitted only if every session still renders in real time.

The model. A session asks for `fps` frames a second, and a frame costs the renderer `seconds_per_frame` of one
render lane: the 95th percentile of the time per frame of recent render calls (`RenderTimes`, seeded by the warm-up
before the port is bound), of the costlier call kind, since any session may start speaking at any moment. So
`sessions × fps × seconds_per_frame` lane-seconds are needed every second, and the renderer has `lanes` of them:

* `lite` draws in the sessions' worker threads, in parallel: one lane per core the process may use;
* `echomimic` runs all GPU work behind one model lock: one lane (its batching of ready windows makes the measured
  time per call cover the whole batch, so the estimate errs on the safe side).

A session draws its own windows one after another, so `n` sessions use at most `min(n, lanes)` lanes: their load is
the lane-seconds they need over that, and above 1 they fall behind real time. A renderer states its lanes with a
`parallel_renders` attribute (none: one lane). One more session is admitted while the load with it stays within
`1 - margin`; the margin covers what the render time does not count
(video encoding shares the CPU with `lite`) and the noise of a 95th percentile. Times measured under load include
waiting for the cores or the lock, so a loaded server errs on the side of refusing. The first session is always
admitted: it pushes nobody below real time (the warm-up logs when the renderer is too slow even for one).

Where there is a GPU, a renderer may report its memory with a `device_memory()` method (free bytes on the device,
and what one more session would take; None without a device), and a session that would not fit is refused too.
`--max-sessions` stays a hard cap on top.

A refusal names its reason (`server_full`: the cap; `no_headroom`: render time; `no_device_memory`) and the numbers,
and says when to try again (`RETRY_AFTER`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.render_times import RenderTimes
from streaming.renderer import DeviceMemory

RETRY_AFTER = 10
"""Seconds a refused client should wait before asking again: long enough for a session to end or the recent render
times to move, short enough for a person to wait."""
DEFAULT_MARGIN = 0.2
"""Share of the renderer's lanes kept free."""
_ROUNDING = 1e-9


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """server_full, no_headroom or no_device_memory."""
    message: str
    retry_after: int = RETRY_AFTER


class AdmissionPolicy:
    """Decides whether one more session fits, and how many fit, from `times` measured on this renderer."""

    def __init__(
        self,
        times: RenderTimes,
        fps: float,
        lanes: int,
        max_sessions: int,
        margin: float = DEFAULT_MARGIN,
        device_memory: Callable[[], DeviceMemory | None] | None = None,
    ) -> None:
        if fps <= 0 or lanes < 1 or max_sessions < 1:
            raise ValueError(
                f"admission needs fps > 0, lanes >= 1, max_sessions >= 1; got {fps}, {lanes}, {max_sessions}"
            )
        if not 0 <= margin < 1:
            raise ValueError(f"the admission margin must be at least 0 and below 1, not {margin}")
        self.times = times
        self.fps = fps
        self.lanes = lanes
        self.max_sessions = max_sessions
        self.margin = margin
        self._device_memory = device_memory

    @classmethod
    def for_renderer(
        cls, renderer: Any, times: RenderTimes, fps: float, max_sessions: int, margin: float = DEFAULT_MARGIN
    ) -> AdmissionPolicy:
        """The policy for `renderer`, with the lanes and device memory it states (see the module docstring)."""
        lanes = getattr(renderer, "parallel_renders", 1)
        reports_memory = callable(getattr(renderer, "device_memory", None))
        memory = renderer.device_memory if reports_memory else None
        return cls(times, fps, lanes, max_sessions, margin, memory)

    def seconds_per_frame(self) -> float:
        """The 95th percentile of recent render time per frame, of the costlier call kind; 0 before any render.

        With several lanes, the lanes are CPU cores shared by the sessions' render threads, and a call's wall time
        also counts the time it waited for a core while the others drew: n sessions on fewer cores would each look
        n/cores times as costly, and admission would refuse ever earlier as load grows (measured: 20–55 ms a frame
        for lite at 384 px with 2–4 sessions whose threads spent a few ms on a core). So the cost there is the CPU
        time of the rendering thread. With one lane (a GPU behind one lock) the wall time is the cost."""
        return max(self.times.p95_per_frame(cpu=self.lanes > 1).values(), default=0.0)

    def utilisation(self, sessions: int) -> float:
        """The load of `sessions` sessions drawing every frame: the lane-seconds they need each second over the
        lanes they can use; above 1 they cannot all run in real time."""
        if sessions == 0:
            return 0.0
        return sessions * self.fps * self.seconds_per_frame() / min(sessions, self.lanes)

    def refusal(self, sessions: int) -> Refusal | None:
        """Why one more session cannot join `sessions` live ones, or None when it can."""
        if sessions >= self.max_sessions:
            return Refusal(
                "server_full",
                f"the server is full ({sessions} of {self.max_sessions} sessions in use); try again in a minute",
            )
        memory = self._device_memory() if self._device_memory is not None else None
        if memory is not None and memory.session_bytes > memory.free_bytes:
            return Refusal(
                "no_device_memory",
                f"one more session needs {memory.session_bytes / 2**20:.0f} MiB of device memory and "
                f"{memory.free_bytes / 2**20:.0f} MiB are free",
            )
        if sessions == 0:
            return None
        per_frame = self.seconds_per_frame()
        needed = (sessions + 1) * self.fps * per_frame
        lanes = min(sessions + 1, self.lanes)
        usable = lanes * (1 - self.margin)
        if needed <= usable + _ROUNDING:
            return None
        return Refusal(
            "no_headroom",
            f"one more session would need {needed:.2f} render lanes for {sessions + 1} sessions at "
            f"{self.fps:g} fps and {per_frame * 1000:.1f} ms per frame (95th percentile of recent renders); "
            f"they can use {lanes} of this renderer's {self.lanes} lane{'s' if self.lanes != 1 else ''}, "
            f"{usable:.2f} with {self.margin:.0%} kept free, so the sessions running would fall behind real time",
        )

    def capacity(self, sessions: int = 0) -> int:
        """How many sessions this renderer runs at once in real time, from the numbers measured now, with
        `sessions` already live (their device memory is already taken): at least 1, at most `max_sessions`."""
        per_session = self.fps * self.seconds_per_frame()
        usable = 1 - self.margin
        fit = self.max_sessions
        if per_session > usable + _ROUNDING:
            fit = 1  # not even one session keeps up with the margin; the first is admitted all the same
        elif per_session > 0:
            # Sessions up to the lanes each have one; beyond, they share them.
            fit = min(fit, max(self.lanes, math.floor(self.lanes * usable / per_session + _ROUNDING)))
        memory = self._device_memory() if self._device_memory is not None else None
        if memory is not None and memory.session_bytes > 0:
            fit = min(fit, sessions + memory.free_bytes // memory.session_bytes)
        return max(1, fit)
