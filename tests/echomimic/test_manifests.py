"""The full-size models, built on the meta device, have exactly the official checkpoint layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from echomimic.models import EchoUNet3DConditionModel, ReferenceUNet2DConditionModel
from tests.echomimic.conftest import assert_resolved_config_matches, tiny_config


def _manifest(conformance_dir: Path, name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((conformance_dir / "manifests" / f"{name}.json").read_text())
    return manifest


def _layout(model: nn.Module, key_filter: str = "") -> dict[str, dict[str, Any]]:
    buffers = {name for name, _ in model.named_buffers()}
    return {
        key: {
            "shape": list(value.shape),
            "dtype": str(value.dtype).removeprefix("torch."),
            "kind": "buffer" if key in buffers else "parameter",
        }
        for key, value in model.state_dict().items()
        if key_filter in key
    }


def _assert_layout_equals(ours: dict[str, dict[str, Any]], manifest: dict[str, Any]) -> None:
    official = {
        key: {"shape": entry["shape"], "dtype": entry["dtype"], "kind": entry["kind"]}
        for key, entry in manifest["keys"].items()
    }
    missing = sorted(official.keys() - ours.keys())
    unexpected = sorted(ours.keys() - official.keys())
    assert not missing, f"{len(missing)} official keys missing, e.g. {missing[:5]}"
    assert not unexpected, f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}"
    different = [(key, ours[key], official[key]) for key in official if ours[key] != official[key]]
    assert not different, f"{len(different)} keys differ in shape, dtype or kind, e.g. {different[:5]}"
    assert len(ours) == manifest["num_keys"]
    parameters = sum(torch.Size(entry["shape"]).numel() for entry in ours.values() if entry["kind"] == "parameter")
    buffers = sum(torch.Size(entry["shape"]).numel() for entry in ours.values() if entry["kind"] == "buffer")
    assert (parameters, buffers) == (manifest["num_parameter_elements"], manifest["num_buffer_elements"])


@pytest.fixture(scope="module")
def full_size_denoising_unet(conformance_dir: Path) -> EchoUNet3DConditionModel:
    base_config = _manifest(conformance_dir, "reference_unet")["base_unet_config"]
    additional_kwargs = tiny_config(conformance_dir, "inference_v2_unet_additional_kwargs")
    with torch.device("meta"):
        return EchoUNet3DConditionModel.from_base_config(base_config, additional_kwargs)


def test_reference_unet_layout(conformance_dir: Path) -> None:
    manifest = _manifest(conformance_dir, "reference_unet")
    with torch.device("meta"):
        model = ReferenceUNet2DConditionModel.from_config(manifest["base_unet_config"])
    _assert_layout_equals(_layout(model), manifest)


def test_denoising_unet_layout(conformance_dir: Path, full_size_denoising_unet: EchoUNet3DConditionModel) -> None:
    _assert_layout_equals(_layout(full_size_denoising_unet), _manifest(conformance_dir, "denoising_unet"))


def test_motion_module_layout(conformance_dir: Path, full_size_denoising_unet: EchoUNet3DConditionModel) -> None:
    _assert_layout_equals(
        _layout(full_size_denoising_unet, key_filter="motion_modules."), _manifest(conformance_dir, "motion_module")
    )


def test_denoising_unet_resolved_config(
    conformance_dir: Path, full_size_denoising_unet: EchoUNet3DConditionModel
) -> None:
    official = _manifest(conformance_dir, "denoising_unet")["resolved_config"]
    assert_resolved_config_matches(full_size_denoising_unet, official)


def test_full_size_bank_pairing_is_by_width_then_module_order(
    full_size_denoising_unet: EchoUNet3DConditionModel,
) -> None:
    """SD 1.5: the 1280-wide blocks (down 2, up 1, mid), then 640 (down 1, up 2), then 320 (down 0, up 3)."""
    order = [name.split(".attentions")[0] for name in full_size_denoising_unet.bank_order]
    assert order == (
        ["down_blocks.2"] * 2 + ["up_blocks.1"] * 3 + ["mid_block"]
        + ["down_blocks.1"] * 2 + ["up_blocks.2"] * 3
        + ["down_blocks.0"] * 2 + ["up_blocks.3"] * 3
    )  # fmt: skip
