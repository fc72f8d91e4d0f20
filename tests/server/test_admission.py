"""Admission decisions from render times fed by hand: no renderer runs and no time is measured."""

from __future__ import annotations

import pytest

from server.admission import AdmissionPolicy
from server.errors import ApiError
from server.metrics import ServerMetrics
from server.render_times import RenderTimes
from server.session_registry import SessionRegistry
from streaming.lite.renderer import LiteRenderer, usable_cores
from streaming.renderer import DeviceMemory

FPS = 25.0


def times_of(**seconds_per_frame: float) -> RenderTimes:
    """Render times where every call of each kind took that long per frame (4-frame windows, 12-frame idles)."""
    times = RenderTimes()
    for kind, seconds in seconds_per_frame.items():
        frames = 4 if kind == "window" else 12
        for _ in range(20):
            times.add_call(kind, seconds * frames, frames)
    return times


def policy(times: RenderTimes, lanes: int = 2, max_sessions: int = 16, **options: object) -> AdmissionPolicy:
    return AdmissionPolicy(times, FPS, lanes, max_sessions, **options)  # type: ignore[arg-type]


def test_sessions_are_admitted_while_all_of_them_fit_in_the_lanes_with_the_margin_kept_free() -> None:
    # 10 ms per frame at 25 fps: a quarter of a lane per session; 2 lanes less 20% hold 6.4 of them.
    admission = policy(times_of(window=0.010, idle=0.002))
    assert admission.utilisation(4) == pytest.approx(0.5)
    assert admission.refusal(5) is None, "the 6th session fits"
    refusal = admission.refusal(6)
    assert refusal is not None and refusal.reason == "no_headroom"
    assert "1.75 render lanes for 7 sessions at 25 fps and 10.0 ms per frame" in refusal.message
    assert "they can use 2 of this renderer's 2 lanes, 1.60 with 20% kept free" in refusal.message
    assert refusal.retry_after > 0
    assert admission.capacity() == 6


def test_the_costlier_call_kind_sets_the_price_of_a_session() -> None:
    assert policy(times_of(window=0.002, idle=0.020)).capacity() == 3
    assert policy(times_of(window=0.020, idle=0.002)).capacity() == 3


def test_the_margin_and_the_lanes_move_the_limit() -> None:
    times = times_of(window=0.010)
    assert policy(times, margin=0.0).capacity() == 8
    assert policy(times, lanes=1, margin=0.5).capacity() == 2


def test_a_session_draws_its_frames_one_after_another_so_lanes_beyond_one_do_not_make_it_faster() -> None:
    admission = policy(times_of(window=0.036), lanes=8)  # 0.9 of a lane per session
    assert admission.utilisation(1) == pytest.approx(0.9)
    assert admission.utilisation(16) == pytest.approx(1.8)
    refusal = admission.refusal(1)
    assert refusal is not None and refusal.reason == "no_headroom", "each session alone is past the margin"
    assert admission.capacity() == 1
    assert policy(times_of(window=0.030), lanes=8).capacity() == 8, "0.75 of a lane each: one lane per session"


def test_the_first_session_is_always_admitted_even_on_a_renderer_too_slow_for_it() -> None:
    admission = policy(times_of(window=0.2), lanes=1)
    assert admission.refusal(0) is None
    assert admission.capacity() == 1
    refusal = admission.refusal(1)
    assert refusal is not None and refusal.reason == "no_headroom"


def test_max_sessions_stays_a_hard_cap_and_nothing_measured_admits_up_to_it() -> None:
    admission = policy(RenderTimes(), max_sessions=3)
    assert admission.refusal(2) is None
    refusal = admission.refusal(3)
    assert refusal is not None and refusal.reason == "server_full"
    assert admission.capacity() == 3


def test_device_memory_refuses_a_session_that_would_not_fit_on_the_device() -> None:
    memory = DeviceMemory(free_bytes=3 * 2**30, session_bytes=2 * 2**30)
    admission = policy(times_of(window=0.001), device_memory=lambda: memory)
    assert admission.refusal(1) is None
    assert admission.capacity(sessions=1) == 2, "one live session, and room on the device for one more"
    memory = DeviceMemory(free_bytes=2**30, session_bytes=2 * 2**30)
    refusal = admission.refusal(1)
    assert refusal is not None and refusal.reason == "no_device_memory"
    assert "2048 MiB of device memory and 1024 MiB are free" in refusal.message
    assert admission.capacity(sessions=1) == 1


def test_a_renderer_states_its_lanes_and_device_memory() -> None:
    class GpuRenderer:
        parallel_renders = 1

        def device_memory(self) -> DeviceMemory:
            return DeviceMemory(free_bytes=0, session_bytes=1)

    times = times_of(window=0.010)
    gpu = AdmissionPolicy.for_renderer(GpuRenderer(), times, FPS, max_sessions=4)
    assert gpu.lanes == 1
    refusal = gpu.refusal(0)
    assert refusal is not None and refusal.reason == "no_device_memory"
    lite = AdmissionPolicy.for_renderer(LiteRenderer(), times, FPS, max_sessions=4)
    assert lite.lanes == usable_cores()
    assert AdmissionPolicy.for_renderer(object(), times, FPS, max_sessions=4).lanes == 1


def test_a_reserved_slot_counts_until_its_session_is_admitted_or_it_is_given_back() -> None:
    metrics = ServerMetrics()
    registry = SessionRegistry(policy(RenderTimes(), max_sessions=1), metrics)
    with registry.reserve():
        with pytest.raises(ApiError) as refused:
            registry.reserve()
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "server_full", 10)
    with pytest.raises(RuntimeError), registry.reserve():
        raise RuntimeError("the avatar could not be prepared")
    with registry.reserve():
        pass  # the slot came back both times
    exposition = metrics.exposition().decode()
    assert 'echolive_admission_refusals_total{reason="server_full"} 1.0' in exposition


def test_sharing_cores_weighs_the_cpu_a_frame_took_and_one_gpu_lane_its_wall_time() -> None:
    times = RenderTimes()
    # 4 sessions on 2 cores: each call waited for a core as long as it drew.
    for _ in range(20):
        times.add_call("window", seconds=0.040 * 6, frames=6, cpu_seconds=0.008 * 6)
    assert policy(times, lanes=2).seconds_per_frame() == pytest.approx(0.008)
    assert policy(times, lanes=2).refusal(4) is None, "4 x 25 fps x 8 ms = 0.8 of 1.6 usable lanes"
    assert policy(times, lanes=1).seconds_per_frame() == pytest.approx(0.040)
