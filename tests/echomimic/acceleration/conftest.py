"""A UNet smaller than the conformance one, for torch.compile, whose tracing time grows with the module count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from echomimic.models import EchoUNet3DConditionModel, ReferenceUNet2DConditionModel
from tests.echomimic.conftest import tiny_config

MINI_LEVELS = {
    "block_out_channels": [32],
    "down_block_types": ["CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D"],
    "layers_per_block": 1,
}
"""One level of one layer, and the mid block: reader transformers, motion modules and resnets, no samplers (the
export test covers the full tiny UNet)."""


@pytest.fixture(scope="session")
def mini_unets(conformance_dir: Path) -> tuple[EchoUNet3DConditionModel, ReferenceUNet2DConditionModel]:
    """(denoising UNet, reference UNet) with random weights, in the official layout at one level."""
    base = tiny_config(conformance_dir, "unet_base_config") | MINI_LEVELS
    torch.manual_seed(0)
    unet = EchoUNet3DConditionModel.from_base_config(
        base, tiny_config(conformance_dir, "inference_v2_unet_additional_kwargs")
    )
    reference = ReferenceUNet2DConditionModel.from_config(base)
    return unet.eval(), reference.eval()
