"""FLOP counts of the full-size networks on the meta device, against the issue's figures and the arithmetic."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from echomimic.acceleration import full_size
from echomimic.acceleration.flops import (
    count_flops,
    counted_tflop,
    format_report,
    unet_tflop_per_frame_step,
)
from echomimic.acceleration.gpu_peaks import GPU_PEAK_TFLOPS
from echomimic.acceleration.profiles import QUALITY, REALTIME

ISSUE_FIGURES = {
    "unet_512": 1.254,
    "unet_384": 0.646,
    "vae_512": 2.51,
    "tiny_512": 0.141,
    "reference_512": 0.77,
    "quality_per_output_frame": 11.9,
}
"""Issue 8's counts (3 significant figures), made with the banks projected in every call as the official sampler
does."""
BANK_PROJECTIONS_512 = (15 * 64 * 64 * 320**2 + 8 * 8 * 1280**2) * 2 * 2 / 1e12
"""TFLOP per frame and step the live renderer saves at 512 by projecting the banks once per portrait: key and value
(2) of h·w tokens by a C×C matrix (2 FLOPs a multiply-add) in 15 reader blocks at 1/1, 1/2 and 1/4 scale (where
h·w·C² is the same: 64²·320²) and the mid block's at 1/8 scale."""
SMALL = dataclasses.replace(QUALITY, name="small", size=64)
"""The quality setting at 64x64, where counting takes a fraction of a second."""


def test_full_size_configs_are_the_official_ones(conformance_dir: Path) -> None:
    manifest = json.loads((conformance_dir / "manifests/reference_unet.json").read_text())
    official = {key: value for key, value in manifest["base_unet_config"].items() if not key.startswith("_")}
    assert official == full_size.SD15_UNET_CONFIG
    with torch.device("meta"):
        unet, reference = full_size.denoising_unet(), full_size.reference_unet()
    denoising_manifest = json.loads((conformance_dir / "manifests/denoising_unet.json").read_text())
    assert sum(p.numel() for p in unet.parameters()) == denoising_manifest["num_parameter_elements"]
    assert sum(p.numel() for p in reference.parameters()) == manifest["num_parameter_elements"]


def test_counts_match_the_issue() -> None:
    assert unet_tflop_per_frame_step(64, 15, projected_banks=False) == pytest.approx(
        ISSUE_FIGURES["unet_512"], abs=5e-4
    )
    assert unet_tflop_per_frame_step(48, 15, projected_banks=False) == pytest.approx(
        ISSUE_FIGURES["unet_384"], abs=5e-4
    )
    live_saving = unet_tflop_per_frame_step(64, 15, projected_banks=False) - unet_tflop_per_frame_step(64, 15)
    assert live_saving == pytest.approx(BANK_PROJECTIONS_512, rel=1e-6)
    report = count_flops(QUALITY)
    assert report.decoder_tflop_per_frame == pytest.approx(ISSUE_FIGURES["vae_512"], abs=6e-3)
    assert report.reference_unet_tflop == pytest.approx(ISSUE_FIGURES["reference_512"], abs=6e-3)
    official_unet_part = 6 * 15 / 12 * ISSUE_FIGURES["unet_512"]
    assert report.decoder_tflop_per_frame + official_unet_part == pytest.approx(
        ISSUE_FIGURES["quality_per_output_frame"], abs=0.05
    )
    tiny = count_flops(dataclasses.replace(QUALITY, decoder="tiny"))
    assert tiny.decoder_tflop_per_frame == pytest.approx(ISSUE_FIGURES["tiny_512"], abs=6e-4)


def test_realtime_profile_fits_24_fps_on_a_4090_at_half_peak() -> None:
    report = count_flops(REALTIME)
    assert report.fps_bound(GPU_PEAK_TFLOPS["4090"], share=0.5) >= 24.0


@pytest.mark.parametrize("profile", [QUALITY, REALTIME], ids=lambda profile: profile.name)
def test_profiles_document_their_counted_flops(profile: object) -> None:
    assert isinstance(profile, type(QUALITY))
    report = count_flops(profile)
    assert f"({report.tflop_per_output_frame:.2f} TFLOP per frame)" in profile.summary


def test_per_output_frame_arithmetic() -> None:
    """Steps, context and decoder enter as the module docstring says; checked at a small size to stay fast."""
    base = count_flops(SMALL)
    fewer_steps = count_flops(dataclasses.replace(SMALL, num_inference_steps=3))
    no_context = count_flops(dataclasses.replace(SMALL, context_frames=0))
    unet_part = base.tflop_per_output_frame - base.decoder_tflop_per_frame
    assert unet_part == pytest.approx(6 * 15 / 12 * base.unet_tflop_per_frame_step)
    assert fewer_steps.unet_tflop_per_output_frame == pytest.approx(base.unet_tflop_per_output_frame / 2)
    assert no_context.unet_tflop_per_output_frame == pytest.approx(6 * no_context.unet_tflop_per_frame_step, rel=1e-9)
    assert base.fps_bound(100.0, 0.5) == pytest.approx(50.0 / base.tflop_per_output_frame)


def test_deep_feature_reuse_arithmetic() -> None:
    """A reusing step costs only the outermost level; the interval sets how many steps run the whole UNet."""
    full = count_flops(dataclasses.replace(SMALL, num_inference_steps=4))
    every_other = count_flops(dataclasses.replace(SMALL, num_inference_steps=4, deep_feature_interval=2))
    one_in_three = count_flops(dataclasses.replace(SMALL, num_inference_steps=4, deep_feature_interval=3))
    per_step, reusing = full.unet_tflop_per_frame_step, full.unet_reusing_tflop_per_frame_step
    assert 0 < reusing < per_step
    assert every_other.unet_tflop_per_output_frame == pytest.approx(15 / 12 * (2 * per_step + 2 * reusing))
    assert one_in_three.unet_tflop_per_output_frame == pytest.approx(15 / 12 * (2 * per_step + 2 * reusing))
    no_reuse_left = count_flops(dataclasses.replace(SMALL, num_inference_steps=1, deep_feature_interval=2))
    assert no_reuse_left.unet_tflop_per_output_frame == pytest.approx(15 / 12 * per_step)


def test_reusing_steps_cost_the_outermost_level_at_full_size() -> None:
    """At 512 and 384 the outermost level is about two fifths of the UNet (the full-resolution attention is the
    costliest part), so a reusing step removes about three fifths of a step's work."""
    assert unet_tflop_per_frame_step(64, 15, reusing_deep_features=True) == pytest.approx(0.5049, abs=5e-4)
    assert unet_tflop_per_frame_step(48, 15, reusing_deep_features=True) == pytest.approx(0.2312, abs=5e-4)


def test_unet_work_per_frame_barely_depends_on_window_length() -> None:
    """Only the motion modules' attention across frames grows with the window."""
    assert unet_tflop_per_frame_step(8, 4) == pytest.approx(unet_tflop_per_frame_step(8, 15), rel=0.02)


def test_counter_sees_matrix_products() -> None:
    with torch.device("meta"):
        a, b = torch.empty(64, 32), torch.empty(32, 16)
        assert counted_tflop(lambda: a @ b) * 1e12 == 2 * 64 * 32 * 16


def test_report_lists_every_gpu() -> None:
    text = format_report(count_flops(SMALL), GPU_PEAK_TFLOPS)
    for name in GPU_PEAK_TFLOPS:
        assert f"\n  {name} " in text
    assert "TFLOP per output frame" in text
