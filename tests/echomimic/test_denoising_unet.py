"""(c) The denoising UNet in read mode reproduces the official outputs, and deliberately broken variants do not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from echomimic.models import EchoUNet3DConditionModel, ReferenceBanks, ReferenceUNet2DConditionModel
from tests.echomimic.conftest import (
    assert_resolved_config_matches,
    build_tiny_denoising_unet,
    tiny_config,
    tiny_tensors,
)

OUTPUT_ATOL = 1e-4
BLOCK_ATOL_PER_UNIT = 1e-4  # block outputs reach ~27, so their float32 noise scales with the magnitude
BLOCKS = [
    "down_blocks.0",
    "down_blocks.1",
    "down_blocks.2",
    "down_blocks.3",
    "mid_block",
    "up_blocks.0",
    "up_blocks.1",
    "up_blocks.3",
]

Fixture = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def fixture(conformance_dir: Path) -> Fixture:
    return tiny_tensors(conformance_dir, "c_denoising_unet.safetensors")


@pytest.fixture(scope="module")
def banks(conformance_dir: Path, tiny_reference_unet: ReferenceUNet2DConditionModel) -> ReferenceBanks:
    """The write pass of (b), as the pipeline produces it: the banks (c) was computed from."""
    inputs = tiny_tensors(conformance_dir, "b_reference_unet.safetensors")
    with torch.no_grad():
        written: ReferenceBanks = tiny_reference_unet(inputs["ref_latent"], inputs["timestep"])
    return written


def _run(model: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks) -> torch.Tensor:
    with torch.no_grad():
        output: torch.Tensor = model(
            fixture["sample"], fixture["timestep"], fixture["audio_cond_fea"], fixture["face_musk_fea"], banks
        )
    return output


def _max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return (actual - expected).abs().max().item()


def test_resolved_config_matches_the_official_one(
    conformance_dir: Path, tiny_denoising_unet: EchoUNet3DConditionModel
) -> None:
    assert_resolved_config_matches(tiny_denoising_unet, tiny_config(conformance_dir, "denoising_unet_resolved_config"))
    assert tiny_denoising_unet.config["audio_attention_scale"] == 3.0


def test_reader_blocks_pair_with_the_official_writer_blocks(
    conformance_dir: Path, tiny_denoising_unet: EchoUNet3DConditionModel
) -> None:
    order = json.loads((conformance_dir / "tiny/b_bank_order.json").read_text())
    assert tiny_denoising_unet.bank_order == [entry["reader_module"] for entry in order]


def test_output_with_fp16_rounded_banks(
    tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks
) -> None:
    error = _max_error(_run(tiny_denoising_unet, fixture, banks.rounded_to_fp16()), fixture["output"])
    assert error <= OUTPUT_ATOL, f"max |Δ| {error:.3g}"


def test_output_with_fp32_banks(
    tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks
) -> None:
    error = _max_error(_run(tiny_denoising_unet, fixture, banks), fixture["output_with_fp32_banks"])
    assert error <= OUTPUT_ATOL, f"max |Δ| {error:.3g}"


def test_cfg_batch_with_unconditional_first_half(
    tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks
) -> None:
    audio, face = fixture["audio_cond_fea"], fixture["face_musk_fea"]
    with torch.no_grad():
        output = tiny_denoising_unet(
            fixture["sample"].repeat(2, 1, 1, 1, 1),
            fixture["timestep"],
            torch.cat([torch.zeros_like(audio), audio]),
            torch.cat([torch.zeros_like(face), face]),
            banks.rounded_to_fp16().repeat_for_cfg(),
            uncond_first_half=True,
        )
    error = _max_error(output, fixture["cfg_output"])
    assert error <= OUTPUT_ATOL, f"max |Δ| {error:.3g}"


def test_block_outputs(tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks) -> None:
    """Debugging checks: each top-level block's hidden state ([(B F), C, h, w] inside the model)."""
    captured: dict[str, torch.Tensor] = {}

    def capture(name: str) -> Callable[[torch.nn.Module, object, object], None]:
        def hook(module: torch.nn.Module, inputs: object, output: object) -> None:
            captured[name] = output[0] if isinstance(output, tuple) else output  # type: ignore[assignment]

        return hook

    # conv_in's own output is the state before the face features are added, as in the fixture.
    modules = {"conv_in": tiny_denoising_unet.conv_in} | {
        name: tiny_denoising_unet.get_submodule(name) for name in BLOCKS
    }
    handles = [module.register_forward_hook(capture(name)) for name, module in modules.items()]
    try:
        _run(tiny_denoising_unet, fixture, banks.rounded_to_fp16())
    finally:
        for handle in handles:
            handle.remove()

    num_frames = fixture["sample"].shape[2]
    for name, folded in captured.items():
        expected = fixture[f"blk_{name}"]
        actual = folded.unflatten(0, (-1, num_frames)).transpose(1, 2)  # [B, C, F, h, w]
        tolerance = BLOCK_ATOL_PER_UNIT * max(1.0, expected.abs().max().item())
        error = _max_error(actual, expected)
        assert error <= tolerance, f"{name}: max |Δ| {error:.3g} > {tolerance:.3g}"


def _banks_ignored(banks: ReferenceBanks) -> ReferenceBanks:
    """Empty banks: every reader block then attends to its own tokens only."""
    return ReferenceBanks({name: bank[:, :0] for name, bank in banks.tensors.items()})


BROKEN_VARIANTS: dict[
    str, tuple[dict[str, float], Callable[[Fixture, ReferenceBanks], tuple[Fixture, ReferenceBanks]]]
] = {
    "audio_scale_1": ({"audio_attention_scale": 1.0}, lambda fixture, banks: (fixture, banks)),
    "banks_ignored": ({}, lambda fixture, banks: (fixture, _banks_ignored(banks))),
    "face_dropped": (
        {},
        lambda fixture, banks: (fixture | {"face_musk_fea": torch.zeros_like(fixture["face_musk_fea"])}, banks),
    ),
}


@pytest.mark.parametrize("variant", BROKEN_VARIANTS)
def test_broken_variants_fail_the_comparison(
    conformance_dir: Path,
    tiny_denoising_unet: EchoUNet3DConditionModel,
    fixture: Fixture,
    banks: ReferenceBanks,
    variant: str,
) -> None:
    overrides, break_inputs = BROKEN_VARIANTS[variant]
    model = build_tiny_denoising_unet(conformance_dir, **overrides) if overrides else tiny_denoising_unet
    broken_fixture, broken_banks = break_inputs(fixture, banks.rounded_to_fp16())
    error = _max_error(_run(model, broken_fixture, broken_banks), fixture["output"])
    assert error > 100 * OUTPUT_ATOL, f"{variant}: max |Δ| {error:.3g} would pass"


def test_odd_batch_with_unconditional_first_half_is_an_error(
    tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks
) -> None:
    with pytest.raises(ValueError, match="even batch"):
        tiny_denoising_unet(fixture["sample"], 499, fixture["audio_cond_fea"], None, banks, uncond_first_half=True)


def test_missing_bank_is_an_error(
    tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks
) -> None:
    partial = ReferenceBanks(dict(list(banks.tensors.items())[1:]))
    with pytest.raises(ValueError, match=r"down_blocks\.1\.attentions\.0\.transformer_blocks\.0"):
        tiny_denoising_unet(fixture["sample"], 499, fixture["audio_cond_fea"], None, partial)


def test_audio_for_other_frames_is_an_error(
    tiny_denoising_unet: EchoUNet3DConditionModel, fixture: Fixture, banks: ReferenceBanks
) -> None:
    with pytest.raises(ValueError, match=r"audio_features must be \[1, 12, tokens, dim\]"):
        tiny_denoising_unet(fixture["sample"], 499, fixture["audio_cond_fea"][:, :6], None, banks)


def test_unsupported_official_option_is_an_error(conformance_dir: Path) -> None:
    base = tiny_config(conformance_dir, "unet_base_config")
    with pytest.raises(ValueError, match="use_inflated_groupnorm"):
        EchoUNet3DConditionModel.from_base_config(base, {"use_inflated_groupnorm": False})
