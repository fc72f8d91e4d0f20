"""Unit: one motion module (down_blocks.1.motion_modules.0) reproduces the official output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from echomimic.models import MotionModule
from tests.echomimic.conftest import tiny_config, tiny_tensors

PREFIX = "down_blocks.1.motion_modules.0."
ATOL = 1e-5


@pytest.fixture(scope="module")
def motion_module(conformance_dir: Path) -> MotionModule:
    kwargs = tiny_config(conformance_dir, "inference_v2_unet_additional_kwargs")["motion_module_kwargs"]
    module = MotionModule(64, **kwargs)
    weights = tiny_tensors(conformance_dir, "weights/motion_module.safetensors")
    module.load_state_dict(
        {key.removeprefix(PREFIX): value for key, value in weights.items() if key.startswith(PREFIX)}
    )
    return module.eval()


def test_motion_module_reproduces_the_official_output(conformance_dir: Path, motion_module: MotionModule) -> None:
    fixture = tiny_tensors(conformance_dir, "unit_motion_module.safetensors")
    video = fixture["input"]  # [B, C, F, h, w]
    batch, _, num_frames, _, _ = video.shape
    with torch.no_grad():
        folded = motion_module(video.transpose(1, 2).flatten(0, 1), num_frames)  # [(B F), C, h, w]
    output = folded.unflatten(0, (batch, num_frames)).transpose(1, 2)
    error = (output - fixture["output"]).abs().max().item()
    assert error <= ATOL, f"max |Δ| {error:.3g}"


def test_positional_table_equals_the_checkpoint_buffer(conformance_dir: Path) -> None:
    kwargs = tiny_config(conformance_dir, "inference_v2_unet_additional_kwargs")["motion_module_kwargs"]
    computed = MotionModule(64, **kwargs).state_dict()
    stored = tiny_tensors(conformance_dir, "weights/motion_module.safetensors")
    pe_keys = [key for key in computed if key.endswith("pos_encoder.pe")]
    assert len(pe_keys) == 2
    for key in pe_keys:
        # sin/cos kernels differ by up to one float32 ulp between CPUs.
        torch.testing.assert_close(computed[key], stored[PREFIX + key], rtol=0, atol=2e-6)


def test_frames_mix_within_a_batch_item_only(motion_module: MotionModule) -> None:
    """With frames folded batch-major, a change in one frame of item 1 reaches all its frames and no frame of item 0."""
    generator = torch.Generator().manual_seed(0)
    video = torch.randn(2 * 5, 64, 3, 4, generator=generator)  # [(B F), C, h, w]
    changed = video.clone()
    changed[6] = torch.randn(64, 3, 4, generator=generator)  # batch item 1, frame 1
    with torch.no_grad():
        delta = (motion_module(changed, 5) - motion_module(video, 5)).abs().flatten(1).amax(dim=1)  # [(B F)]
    assert (delta[:5] == 0).all()
    assert (delta[5:] > 1e-4).all()


def test_more_frames_than_the_positional_table_is_a_clear_error(motion_module: MotionModule) -> None:
    with pytest.raises(ValueError, match="33 frames exceed"):
        motion_module(torch.zeros(33, 64, 1, 1), 33)
