"""Decoded frames to the host: the same pixels as a plain copy, on the CPU and (where there is one) from a GPU
through pinned memory."""

from __future__ import annotations

import pytest
import torch

from echomimic.acceleration.host_transfer import start_frame_transfer


def plain_copy(pictures: torch.Tensor) -> torch.Tensor:
    return (pictures.float().cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def test_frames_reach_the_host_as_uint8_rows_of_rgb_pixels() -> None:
    pictures = torch.rand(3, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    pending = start_frame_transfer(pictures)
    assert pending.copied is None
    frames = pending.wait()
    assert frames.shape == (3, 16, 24, 3)
    assert frames.dtype.name == "uint8"
    assert torch.equal(torch.from_numpy(frames), plain_copy(pictures))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none")
def test_frames_from_a_gpu_land_in_pinned_memory_with_the_same_pixels() -> None:
    pictures = torch.rand(6, 3, 64, 64, device="cuda", dtype=torch.float16)
    pending = start_frame_transfer(pictures)
    assert pending.host.is_pinned()
    assert torch.equal(torch.from_numpy(pending.wait()), plain_copy(pictures))
