"""The denoising UNet exports with torch.export at a profile's window shape (Torch-TensorRT's front door); the
exported program computes what the UNet computes when called as the live sampler calls it, and swaps into the
pipeline the way a TensorRT engine built from it does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from echomimic.acceleration.backend_names import Backend
from echomimic.acceleration.backends import AcceleratedUNet, BackendChoice
from echomimic.acceleration.profiles import QUALITY
from echomimic.acceleration.window_program import (
    UNetPass,
    WindowProgram,
    WindowShape,
    example_window_inputs,
    export_window_program,
    flatten_window_inputs,
)
from echomimic.live_sampler import DenoisingUNet, PinnedFrames, WindowInputs, denoise_windows
from echomimic.models import EchoUNet3DConditionModel, ReferenceBanks, ReferenceUNet2DConditionModel
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline
from echomimic.weights import load_echomimic
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

QUALITY_WINDOW = WindowShape(1, QUALITY.frames_per_window, 8, 12)
"""The quality profile's window (15 frames) at a small non-square latent (an h/w swap would show)."""
ATOL = RTOL = 1e-4
"""Thread-count noise on this UNet's output is 5e-6 (conformance README); a real bug is O(1)."""


@pytest.fixture(scope="module")
def pipeline(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EchoMimicPipeline:
    weights_dir = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    return load_echomimic(weights_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def exported(pipeline: EchoMimicPipeline) -> torch.export.ExportedProgram:
    unet = pipeline.denoising_unet
    return export_window_program(unet, example_window_inputs(unet, pipeline.reference_unet, QUALITY_WINDOW))


def _live_call(
    unet: EchoUNet3DConditionModel, reference_unet: ReferenceUNet2DConditionModel, shape: WindowShape
) -> dict[str, object]:
    """Arguments as the live sampler passes them: a 0-d long timestep, fp16-rounded banks of batch 1 with their
    projections, face features of one frame, audio tokens per frame."""
    generator = torch.Generator().manual_seed(3)
    height, width = shape.latent_height, shape.latent_width
    with torch.no_grad():
        banks = reference_unet(torch.randn(1, 4, height, width, generator=generator), 0).rounded_to_fp16()
    return {
        "sample": torch.randn(shape.batch, 4, shape.frames, height, width, generator=generator),
        "timestep": torch.tensor(666),
        "audio_features": torch.randn(shape.batch, shape.frames, 50, 384, generator=generator),
        "face_features": torch.randn(1, unet.config["block_out_channels"][0], 1, height, width, generator=generator),
        "reference_banks": unet.project_banks(banks),
    }


def test_unet_exports_at_the_quality_window_and_matches_eager(
    pipeline: EchoMimicPipeline, exported: torch.export.ExportedProgram
) -> None:
    unet = pipeline.denoising_unet
    call = _live_call(unet, pipeline.reference_unet, QUALITY_WINDOW)
    unprojected = call | {"reference_banks": ReferenceBanks(call["reference_banks"].tensors)}  # type: ignore[union-attr]
    with torch.no_grad():
        expected = unet(**call)
        actual = exported.module()(*flatten_window_inputs(unet, **call))  # type: ignore[arg-type]
        from_unprojected = exported.module()(*flatten_window_inputs(unet, **unprojected))  # type: ignore[arg-type]
    assert actual.shape == expected.shape == (1, 4, QUALITY_WINDOW.frames, 8, 12)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(from_unprojected, expected, atol=ATOL, rtol=RTOL)

    other_window = example_window_inputs(unet, pipeline.reference_unet, WindowShape(1, 6, 8, 12))
    with pytest.raises(Exception, match=r"shape|size|Expected"):  # an exported program is fixed to its shapes
        exported.module()(*other_window)


def test_an_engine_swaps_into_the_live_sampler(
    pipeline: EchoMimicPipeline, exported: torch.export.ExportedProgram
) -> None:
    """A fixed-shape program (the exported UNet, as a TensorRT engine built from it would be) is the live sampler's
    UNet, and a live window, context pinned to shown latents, comes out unchanged."""
    unet = pipeline.denoising_unet
    expected = _live_window(pipeline, unet)
    choice = BackendChoice(Backend.TENSORRT, "the exported program stands in for an engine")
    accelerated = AcceleratedUNet(unet, choice, window_programs={(UNetPass.FULL, QUALITY_WINDOW): exported.module()})
    torch.testing.assert_close(_live_window(pipeline, accelerated), expected, atol=ATOL, rtol=RTOL)


def test_the_deep_feature_passes_export_and_swap_into_the_live_sampler(
    pipeline: EchoMimicPipeline, exported: torch.export.ExportedProgram
) -> None:
    """A profile that reuses deep features runs three passes; each exports at the window shape, and engines of the
    three (exported programs standing in) give the live window that eager reuse gives."""
    unet = pipeline.denoising_unet
    programs = {(UNetPass.FULL, QUALITY_WINDOW): exported.module()}
    for unet_pass in (UNetPass.KEEPING_DEEP_FEATURES, UNetPass.REUSING_DEEP_FEATURES):
        inputs = example_window_inputs(unet, pipeline.reference_unet, QUALITY_WINDOW, unet_pass)
        programs[(unet_pass, QUALITY_WINDOW)] = export_window_program(unet, inputs, unet_pass).module()
    calls: list[UNetPass] = []

    def recorded(unet_pass: UNetPass, program: Callable[..., object]) -> Callable[..., object]:
        return lambda *inputs: calls.append(unet_pass) or program(*inputs)

    choice = BackendChoice(Backend.TENSORRT, "exported programs stand in for engines")
    engines = {key: recorded(key[0], program) for key, program in programs.items()}
    accelerated = AcceleratedUNet(unet, choice, window_programs=engines)
    expected = _live_window(pipeline, unet, steps=3, deep_feature_interval=2)
    actual = _live_window(pipeline, accelerated, steps=3, deep_feature_interval=2)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)
    assert calls == [UNetPass.KEEPING_DEEP_FEATURES, UNetPass.REUSING_DEEP_FEATURES, UNetPass.FULL]


def _live_window(
    pipeline: EchoMimicPipeline, unet: DenoisingUNet, steps: int = 2, deep_feature_interval: int = 1
) -> torch.Tensor:
    rng = np.random.default_rng(5)
    frames, height, width = QUALITY_WINDOW.frames, QUALITY_WINDOW.latent_height, QUALITY_WINDOW.latent_width
    image = rng.integers(0, 256, (8 * height, 8 * width, 3), dtype=np.uint8)
    mask = np.zeros(image.shape[:2], dtype=np.float32)
    mask[16:48, 24:72] = 1.0
    reference = pipeline.prepare_reference(image, mask)
    reference = dataclasses.replace(reference, banks=pipeline.denoising_unet.project_banks(reference.banks))
    context = QUALITY.context_frames
    window = WindowInputs(
        reference=reference,
        audio_features=torch.from_numpy(rng.standard_normal((frames, 50, 384), dtype=np.float32)),
        noise=torch.from_numpy(rng.standard_normal((1, 4, frames, height, width), dtype=np.float32)),
        pinned=PinnedFrames(
            list(range(context)),
            torch.from_numpy(rng.standard_normal((1, 4, context, height, width), dtype=np.float32)),
        ),
    )
    (latents,) = denoise_windows(
        pipeline, unet, [window], steps, guidance_scale=1.0, deep_feature_interval=deep_feature_interval
    )
    assert latents is not None
    return latents


def test_window_inputs_broadcast_one_portrait_over_a_batch(pipeline: EchoMimicPipeline) -> None:
    """Two windows of the same avatar batched: face features and banks of batch 1 serve both items."""
    unet = pipeline.denoising_unet
    call = _live_call(unet, pipeline.reference_unet, WindowShape(2, 4, 8, 8))
    sample, timesteps, audio, face, *projections = flatten_window_inputs(unet, **call)  # type: ignore[arg-type]
    assert timesteps.tolist() == [666, 666] and timesteps.dtype == torch.long
    assert face.shape[0] == 2 and all(projection.shape[0] == 2 for projection in projections)
    assert len(projections) == 2 * len(unet.bank_order)
    one_portrait_twice = ReferenceBanks.batch([call["reference_banks"]] * 2)  # type: ignore[list-item]
    with torch.no_grad():
        flat = WindowProgram(unet)(sample, timesteps, audio, face, *projections)
        expected = unet(**(call | {"reference_banks": one_portrait_twice}))
    torch.testing.assert_close(flat, expected, atol=ATOL, rtol=RTOL)
