"""Loading semantics: strict loads, and the official merge order of the denoising UNet's three sources."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from echomimic.models import CheckpointMismatchError, EchoUNet3DConditionModel, load_denoising_unet_state, load_strict

ATTN2_KEY = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
MOTION_KEY = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"
BASE_ONLY_KEY = "conv_out.bias"  # absent from the denoising file below, so it keeps the base value


def _micro_unet() -> EchoUNet3DConditionModel:
    """A two-level denoising UNet small enough to build in milliseconds; 16-wide audio tokens."""
    return EchoUNet3DConditionModel(
        block_out_channels=(32, 32),
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        layers_per_block=1,
        cross_attention_dim=16,
        motion_module_resolutions=(1, 2),
        motion_module_kwargs={
            "num_attention_heads": 8,
            "num_transformer_block": 1,
            "attention_block_types": ["Temporal_Self"],
            "temporal_position_encoding": True,
            "temporal_position_encoding_max_len": 8,
        },
    )


def _filled(state: dict[str, torch.Tensor], value: float) -> dict[str, torch.Tensor]:
    return {key: torch.full_like(tensor, value) for key, tensor in state.items()}


def _sources(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Base SD UNet (1.0, 768-wide attn2 k/v, one unknown key), motion modules (2.0), denoising file (3.0)."""
    state = model.state_dict()
    motion = {key: value for key, value in state.items() if "motion_modules." in key}
    others = {key: value for key, value in state.items() if "motion_modules." not in key}
    base = _filled(others, 1.0) | {"base_only.weight": torch.ones(3)}
    for key in base:
        if ".attn2.to_k." in key or ".attn2.to_v." in key:
            base[key] = torch.ones(base[key].shape[0], 768)
    denoising = _filled({key: value for key, value in others.items() if key != BASE_ONLY_KEY}, 3.0)
    denoising["not_in_model.weight"] = torch.ones(2)
    return base, _filled(motion, 2.0), denoising


def test_denoising_merge_follows_the_official_order() -> None:
    model = _micro_unet()
    base, motion, denoising = _sources(model)
    report = load_denoising_unet_state(model, base, motion, denoising)

    loaded = model.state_dict()
    assert (loaded[ATTN2_KEY] == 3.0).all()
    assert (loaded[MOTION_KEY] == 2.0).all()
    assert (loaded[BASE_ONLY_KEY] == 1.0).all()
    assert all((value == 3.0).all() for key, value in loaded.items() if key in denoising)
    assert set(report.from_base_or_motion_module) == {BASE_ONLY_KEY, *motion}
    assert report.from_denoising_file == [key for key in loaded if key in denoising]
    assert report.ignored_denoising_keys == ["not_in_model.weight"]
    assert report.not_loaded == []


def test_base_key_with_another_shape_is_skipped_silently() -> None:
    model = _micro_unet()
    base, motion, denoising = _sources(model)
    del denoising[ATTN2_KEY]
    before = model.state_dict()[ATTN2_KEY].clone()
    report = load_denoising_unet_state(model, base, motion, denoising)
    assert report.not_loaded == [ATTN2_KEY]
    torch.testing.assert_close(model.state_dict()[ATTN2_KEY], before, rtol=0, atol=0)


def test_denoising_key_with_another_shape_is_an_error_naming_file_key_and_shapes() -> None:
    model = _micro_unet()
    base, motion, denoising = _sources(model)
    denoising[ATTN2_KEY] = torch.ones(32, 768)
    with pytest.raises(CheckpointMismatchError) as error:
        load_denoising_unet_state(model, base, motion, denoising, denoising_file_label="denoising_unet_acc.pth")
    message = str(error.value)
    assert "denoising_unet_acc.pth" in message
    assert ATTN2_KEY in message
    assert "[32, 768]" in message and "[32, 16]" in message


def test_strict_load_accepts_an_exact_state() -> None:
    model = _micro_unet()
    load_strict(model, _filled(model.state_dict(), 0.5), "reference_unet.pth")
    assert all((value == 0.5).all() for value in model.state_dict().values())


@pytest.mark.parametrize(
    ("change", "expected_fragments"),
    [
        ("missing", ["reference_unet.pth", "missing key 'conv_in.bias'", "[32]"]),
        ("unexpected", ["reference_unet.pth", "unexpected key 'extra.weight'", "[4]"]),
        ("shape", ["reference_unet.pth", "'conv_in.bias'", "[31]", "[32]"]),
    ],
)
def test_strict_load_names_file_key_and_shapes(change: str, expected_fragments: list[str]) -> None:
    model = _micro_unet()
    state = _filled(model.state_dict(), 0.5)
    if change == "missing":
        del state["conv_in.bias"]
    elif change == "unexpected":
        state["extra.weight"] = torch.ones(4)
    else:
        state["conv_in.bias"] = torch.ones(31)
    before = model.state_dict()["conv_in.weight"].clone()
    with pytest.raises(CheckpointMismatchError) as error:
        load_strict(model, state, "reference_unet.pth")
    for fragment in expected_fragments:
        assert fragment in str(error.value)
    torch.testing.assert_close(model.state_dict()["conv_in.weight"], before, rtol=0, atol=0)
