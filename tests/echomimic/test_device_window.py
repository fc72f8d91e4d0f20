"""The window the GPU test denoises under torch's sync debug mode (`tests/echomimic/test_gpu.py`), run on the CPU:
the same code path, with its pinned context landing exactly on the shown frames."""

from __future__ import annotations

from pathlib import Path

import torch

from echomimic.live_sampler import denoise_windows
from echomimic.weights import load_echomimic
from tests.echomimic.device_window import CONTEXT, FRAMES, SIZE, window_on_the_device
from tests.echomimic.fake_weights_folder import write_fake_weights_folder


def test_a_window_with_its_inputs_on_the_device_denoises(conformance_dir: Path, tmp_path: Path) -> None:
    pipeline = load_echomimic(write_fake_weights_folder(conformance_dir, tmp_path), device="cpu")
    window = window_on_the_device(pipeline)
    assert window.pinned is not None
    (latents,) = denoise_windows(pipeline, pipeline.denoising_unet, [window], 2, 1.0)
    assert latents is not None
    latent = SIZE // pipeline.vae_scale_factor
    assert latents.shape == (1, 4, FRAMES, latent, latent)
    assert torch.isfinite(latents).all()
    torch.testing.assert_close(latents[:, :, :CONTEXT], window.pinned.latents, atol=0, rtol=0)
