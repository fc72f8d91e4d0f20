"""Backend choice (best first, with the reason), the swap-in `AcceleratedUNet`, and a compiled path against eager."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from echomimic.acceleration.backend_names import Backend
from echomimic.acceleration.backends import (
    AcceleratedUNet,
    BackendChoice,
    BackendUnavailableError,
    accelerate_denoising_unet,
    choose_backend,
    compile_window_programs,
)
from echomimic.acceleration.window_program import UNetPass, WindowShape, example_window_inputs
from echomimic.models import EchoUNet3DConditionModel, ReferenceUNet2DConditionModel

ATOL = RTOL = 1e-4
"""Thread-count noise on a UNet output is about 5e-6; a real bug is O(1) (conformance README)."""
NO_CUDA = "no CUDA device"


def test_auto_takes_the_best_backend_that_can_run() -> None:
    everything = {Backend.TENSORRT: None, Backend.COMPILE: None}
    assert choose_backend("auto", everything).backend == Backend.TENSORRT
    no_engines = {Backend.TENSORRT: "no engine for batch 1", Backend.COMPILE: None}
    choice = choose_backend("auto", no_engines)
    assert choice.backend == Backend.COMPILE
    assert "no engine for batch 1" in choice.reason
    nothing = {Backend.TENSORRT: NO_CUDA, Backend.COMPILE: "triton is not installed"}
    choice = choose_backend("auto", nothing)
    assert choice.backend == Backend.EAGER
    assert "tensorrt: no CUDA device" in choice.reason and "compile: triton is not installed" in choice.reason


def test_a_named_backend_runs_or_says_why_not() -> None:
    problems = {Backend.TENSORRT: NO_CUDA, Backend.COMPILE: None}
    assert choose_backend("compile", problems).backend == Backend.COMPILE
    assert choose_backend("eager", problems).backend == Backend.EAGER
    with pytest.raises(BackendUnavailableError, match="tensorrt backend cannot run here: no CUDA device"):
        choose_backend("tensorrt", problems)
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        choose_backend("fast", problems)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA chooses")
def test_without_cuda_the_unet_runs_eagerly_and_the_log_says_why(
    mini_unets: tuple[EchoUNet3DConditionModel, ReferenceUNet2DConditionModel],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    unet, _ = mini_unets
    with caplog.at_level(logging.INFO, logger="echomimic.acceleration.backends"):
        accelerated = accelerate_denoising_unet(unet, [WindowShape(1, 15, 8, 8)], weights="w", engine_dir=tmp_path)
    assert accelerated.choice.backend == Backend.EAGER
    assert "denoising UNet backend: eager" in caplog.text
    assert "tensorrt: no CUDA device" in caplog.text
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        accelerate_denoising_unet(unet, [], requested="compile")


def _call(unet: EchoUNet3DConditionModel, reference_unet: ReferenceUNet2DConditionModel, shape: WindowShape) -> dict:
    sample, timesteps, audio, face, *_ = example_window_inputs(unet, reference_unet, shape)
    with torch.no_grad():
        banks = reference_unet(torch.randn(1, 4, shape.latent_height, shape.latent_width), 0).rounded_to_fp16()
        banks = unet.project_banks(banks)
    return {
        "sample": sample,
        "timestep": timesteps[0],
        "audio_features": audio,
        "face_features": face[:1],
        "reference_banks": banks,
    }


def test_compiled_unet_matches_eager(
    mini_unets: tuple[EchoUNet3DConditionModel, ReferenceUNet2DConditionModel],
) -> None:
    """torch.compile's tracing and AOT graph capture (the "aot_eager" backend runs on any CPU) of each UNet pass as
    one graph, called with the UNet's own signature, computes what eager computes."""
    unet, reference_unet = mini_unets
    choice = BackendChoice(Backend.COMPILE, "test")
    programs = compile_window_programs(unet, "aot_eager", None)
    calls: list[UNetPass] = []
    counted = {unet_pass: _counting(program, unet_pass, calls) for unet_pass, program in programs.items()}
    compiled = AcceleratedUNet(unet, choice, any_window_programs=counted)
    call = _call(unet, reference_unet, WindowShape(1, 15, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(compiled(**call), unet(**call), atol=ATOL, rtol=RTOL)
        output, deep_features = compiled.forward_keeping_deep_features(**call)
        expected_output, expected_deep_features = unet.forward_keeping_deep_features(**call)
        torch.testing.assert_close(output, expected_output, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(deep_features, expected_deep_features, atol=ATOL, rtol=RTOL)
        reusing = compiled(**call, deep_features=deep_features * 0.5)
        torch.testing.assert_close(reusing, unet(**call, deep_features=deep_features * 0.5), atol=ATOL, rtol=RTOL)
    assert calls == list(UNetPass)


def _counting(program: Callable[..., object], unet_pass: UNetPass, calls: list[UNetPass]) -> Callable[..., object]:
    def counted(*inputs: torch.Tensor) -> object:
        calls.append(unet_pass)
        return program(*inputs)

    return counted


def test_calls_without_a_program_run_eagerly(
    mini_unets: tuple[EchoUNet3DConditionModel, ReferenceUNet2DConditionModel],
) -> None:
    unet, reference_unet = mini_unets
    calls: list[WindowShape] = []

    def program(sample: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        calls.append(WindowShape.of_sample(sample))
        return torch.zeros_like(sample)

    programs = {(UNetPass.FULL, WindowShape(1, 4, 8, 8)): program}
    accelerated = AcceleratedUNet(unet, BackendChoice(Backend.TENSORRT, "test"), window_programs=programs)
    assert accelerated.window_shapes == [WindowShape(1, 4, 8, 8)]
    with torch.no_grad():
        assert not accelerated(**_call(unet, reference_unet, WindowShape(1, 4, 8, 8))).any()
        other_shape = _call(unet, reference_unet, WindowShape(1, 6, 8, 8))
        torch.testing.assert_close(accelerated(**other_shape), unet(**other_shape))
        guided = _call(unet, reference_unet, WindowShape(2, 4, 8, 8))
        guided["reference_banks"] = guided["reference_banks"].repeat_for_cfg()
        torch.testing.assert_close(
            accelerated(**guided, uncond_first_half=True), unet(**guided, uncond_first_half=True)
        )
        same_shape = _call(unet, reference_unet, WindowShape(1, 4, 8, 8))
        output, deep_features = accelerated.forward_keeping_deep_features(**same_shape)  # no program for this pass
        torch.testing.assert_close(output, unet(**same_shape))
        torch.testing.assert_close(
            accelerated(**same_shape, deep_features=deep_features), unet(**same_shape, deep_features=deep_features)
        )
    assert calls == [WindowShape(1, 4, 8, 8)]
