"""What a timed session tells admission: the wall time of a render call and, apart from it, the CPU time its
thread spent drawing."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from server.render_times import RenderTimes
from server.timed_renderer import RenderCall, TimedRenderer
from streaming.frames import IdlePose
from streaming.lite.default_portrait import default_portrait_path, load_portrait
from tests.server.fake_renderer import SlowRenderer


def test_a_call_that_waits_costs_wall_time_but_no_cpu() -> None:
    histogram = Histogram("render_seconds", "render time", ["kind"], registry=CollectorRegistry())
    times = RenderTimes()
    timed = TimedRenderer(SlowRenderer(seconds_per_frame=0.05), histogram, times)
    calls: list[RenderCall] = []
    timed.on_render = calls.append
    session = timed.open_session(timed.prepare_avatar(load_portrait(default_portrait_path())))
    session.render_idle(0, [IdlePose()] * 2)
    (call,) = calls
    assert call.seconds >= 0.1
    assert call.cpu_seconds < call.seconds / 2, "sleeping was counted as work"
    assert times.p95_per_frame(cpu=True)["idle"] < times.p95_per_frame()["idle"] / 2
    assert np.isclose(times.p95_per_frame()["idle"], call.seconds / 2)
