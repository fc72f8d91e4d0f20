"""`bench/gpu.py` stays runnable: its CPU smoke mode renders a window through every stage and prints a result row
per case and layout; a case that fails is listed and the others still run; it samples through the live sampler and
counts the FLOPs of what the sampler calls."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from bench import gpu as bench_gpu
from bench.gpu import (
    CHANNELS_LAST,
    CONTIGUOUS,
    Case,
    build_networks,
    cases_for,
    count_host_syncs,
    main,
    run_case,
    with_live_windows,
)
from echomimic.acceleration.backend_names import Backend
from echomimic.acceleration.channels_last import is_channels_last
from echomimic.acceleration.profiles import QUALITY, REALTIME
from echomimic.streaming_renderer import LIVE_WINDOW


def test_tiny_run_prints_a_row_per_case_and_survives_a_failing_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case = bench_gpu.run_case

    def out_of_memory_for_two_sessions(case: Case, *args: object) -> object:
        if case.batch == 2:
            raise RuntimeError("CUDA out of memory")
        return run_case(case, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench_gpu, "run_case", out_of_memory_for_two_sessions)
    assert main(["--tiny", "--profiles", "realtime", "--windows", "1", "--batches", "2,1"]) == 0
    output = capsys.readouterr().out
    assert "matmul peak" in output
    for layout in (CONTIGUOUS, CHANNELS_LAST):  # the second layout runs at the first session count given
        assert f"failed: realtime, eager, {layout}, 2 session(s): RuntimeError('CUDA out of memory')" in output
    rows = [line for line in output.splitlines() if line.startswith("| CPU")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[2:6] == ["realtime", "eager", CONTIGUOUS, "1"]
    stages = cells[6].split("(")[1].rstrip(")").split(" / ")
    assert len(stages) == 4 and all(float(stage) > 0 for stage in stages)  # audio, sampling, decode, colour
    assert float(cells[7]) > 0 and float(cells[8]) > 0  # fps per session, UNet TFLOP/s
    assert cells[11] == "n/a"  # host syncs: none to count on the CPU


def test_layouts_after_the_first_run_for_eager_at_the_first_session_count_unless_every_layout() -> None:
    layouts = [CONTIGUOUS, CHANNELS_LAST]
    cases = cases_for([QUALITY], [Backend.EAGER, Backend.COMPILE], [1, 2], layouts)
    assert cases == [
        Case(QUALITY, Backend.EAGER, 1, CONTIGUOUS),
        Case(QUALITY, Backend.EAGER, 1, CHANNELS_LAST),
        Case(QUALITY, Backend.EAGER, 2, CONTIGUOUS),
        Case(QUALITY, Backend.COMPILE, 1, CONTIGUOUS),
        Case(QUALITY, Backend.COMPILE, 2, CONTIGUOUS),
    ]
    assert len(cases_for([QUALITY], [Backend.EAGER, Backend.COMPILE], [1, 2], layouts, every_layout=True)) == 8


def test_an_unknown_layout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--tiny", "--layouts", "nhwc"])
    assert "unknown layout 'nhwc'" in capsys.readouterr().err


def test_sampling_runs_the_live_sampler_and_its_flops_are_counted_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    networks = build_networks(torch.device("cpu"), torch.float32, tiny=True)
    sampler_calls: list[int] = []
    denoise_windows = bench_gpu.denoise_windows

    def spy(*args: Any) -> Any:
        sampler_calls.append(args[3])  # num_inference_steps
        return denoise_windows(*args)

    monkeypatch.setattr(bench_gpu, "denoise_windows", spy)
    profile = dataclasses.replace(REALTIME, size=bench_gpu.TINY_SIZE, num_inference_steps=1, deep_feature_interval=1)
    one_step = run_case(Case(profile, Backend.EAGER, 1), networks, torch.device("cpu"), torch.float32, 1)
    two_steps = run_case(
        Case(dataclasses.replace(profile, num_inference_steps=2), Backend.EAGER, 1, CHANNELS_LAST),
        networks,
        torch.device("cpu"),
        torch.float32,
        1,
    )
    assert sampler_calls == [1, 1, 1, 2, 2, 2]  # counted, first and timed window of each case
    assert one_step.sampling_tflop_per_window > 0
    assert two_steps.sampling_tflop_per_window == pytest.approx(2 * one_step.sampling_tflop_per_window)
    assert one_step.host_syncs is None
    convolutions = [module for module in networks.denoising_unet.modules() if isinstance(module, torch.nn.Conv2d)]
    assert not is_channels_last(convolutions[0].weight), "a channels-last case leaves the networks contiguous"


def test_host_syncs_are_not_counted_on_the_cpu() -> None:
    assert count_host_syncs(lambda: torch.ones(3).sum().item(), torch.device("cpu")) is None


def test_cases_run_in_the_order_given_and_compiled_last() -> None:
    cases = cases_for([QUALITY, REALTIME], [Backend.EAGER, Backend.COMPILE], [1, 2], [CONTIGUOUS])
    first = [Case(QUALITY, Backend.EAGER, 1), Case(REALTIME, Backend.EAGER, 1), Case(QUALITY, Backend.EAGER, 2)]
    assert cases[:3] == first
    assert [case.backend for case in cases] == [Backend.EAGER] * 4 + [Backend.COMPILE] * 4


def test_a_case_past_the_deadline_is_skipped_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tiny", "--profiles", "realtime", "--batches", "1", "--deadline", "0"]) == 0
    output = capsys.readouterr().out
    assert "skipped (deadline): realtime, eager, contiguous, 1 session(s)" in output
    assert not [line for line in output.splitlines() if line.startswith("| CPU")]


def test_live_window_variants_follow_their_profile_at_the_renderers_window() -> None:
    profiles = with_live_windows([QUALITY, REALTIME])
    assert [profile.name for profile in profiles] == [
        "quality",
        "quality, live window",
        "realtime",
        "realtime, live window",
    ]
    live = profiles[1]
    assert (live.window_frames, live.context_frames) == (LIVE_WINDOW.frames, LIVE_WINDOW.context)
    assert dataclasses.replace(live, name=QUALITY.name, window_frames=12, context_frames=3) == QUALITY
