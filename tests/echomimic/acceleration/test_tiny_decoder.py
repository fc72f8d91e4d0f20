"""Frame decoders: the tiny autoencoder from a local taesd-layout folder, the SD VAE fallback, batched decoding."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

from echomimic.acceleration.tiny_decoder import (
    FrameDecoder,
    TinyDecoderError,
    load_tiny_decoder,
    make_frame_decoder,
)
from echomimic.pipelines.pipeline_echomimic import VAE_LATENT_SCALE
from tests.echomimic.conftest import tiny_config, tiny_tensors

TINY_TAESD_CONFIG = {
    "encoder_block_out_channels": [8, 8, 8, 8],
    "decoder_block_out_channels": [8, 8, 8, 8],
    "num_encoder_blocks": [1, 1, 1, 1],
    "num_decoder_blocks": [1, 1, 1, 1],
}
"""The taesd layout (4 latent channels, three 2x upsamplings), narrow enough to run in milliseconds."""


@pytest.fixture(scope="module")
def taesd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("taesd")
    AutoencoderTiny(**TINY_TAESD_CONFIG).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_vae(conformance_dir: Path) -> AutoencoderKL:
    vae: AutoencoderKL = AutoencoderKL.from_config(tiny_config(conformance_dir, "vae_config"))
    vae.load_state_dict(tiny_tensors(conformance_dir, "weights/vae.safetensors"))
    return vae.eval()


def _latents(batch: int = 2, frames: int = 3) -> torch.Tensor:
    return torch.randn(batch, 4, frames, 4, 6, generator=torch.Generator().manual_seed(1))  # scaled by 0.18215


def test_tiny_decoder_decodes_a_window_in_one_batch(taesd_dir: Path) -> None:
    decoder = load_tiny_decoder(taesd_dir, torch.device("cpu"), torch.float32)
    latents = _latents()
    frames = decoder.decode(latents)
    assert frames.shape == (6, 3, 32, 48)
    assert frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    # batch-major: frame (b, f) is item b·F + f, and equals that latent decoded on its own
    reference = AutoencoderTiny.from_pretrained(taesd_dir).eval()
    with torch.no_grad():
        alone = reference.decode(latents[1, :, 2][None]).sample[0]
    torch.testing.assert_close(frames[1 * 3 + 2], (alone / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=1e-5)


def test_chunked_decoding_matches_one_call(taesd_dir: Path) -> None:
    whole = load_tiny_decoder(taesd_dir, torch.device("cpu"), torch.float32)
    chunked = load_tiny_decoder(taesd_dir, torch.device("cpu"), torch.float32, frames_per_call=4)
    torch.testing.assert_close(chunked.decode(_latents()), whole.decode(_latents()), atol=1e-5, rtol=1e-5)


def test_sd_vae_decoder_unscales_the_latents(tiny_vae: AutoencoderKL) -> None:
    latents = _latents(batch=1, frames=2)
    frames = FrameDecoder.sd_vae(tiny_vae).decode(latents)
    with torch.no_grad():
        expected = tiny_vae.decode(latents[0, :, 1][None] / VAE_LATENT_SCALE).sample[0]
    torch.testing.assert_close(frames[1], (expected / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=1e-5)


def test_no_folder_falls_back_to_the_sd_vae_and_says_so(
    tiny_vae: AutoencoderKL, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="echomimic.acceleration.tiny_decoder"):
        decoder = make_frame_decoder("tiny", tiny_vae, taesd_dir=None)
    assert decoder.kind == "vae"
    assert decoder.network is tiny_vae
    assert "no taesd folder" in caplog.text
    assert "official EchoMimic release has none" in caplog.text


def test_a_folder_makes_the_tiny_decoder(tiny_vae: AutoencoderKL, taesd_dir: Path) -> None:
    decoder = make_frame_decoder("tiny", tiny_vae, taesd_dir)
    assert decoder.kind == "tiny"
    assert isinstance(decoder.network, AutoencoderTiny)
    assert make_frame_decoder("vae", tiny_vae, taesd_dir).kind == "vae"


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TinyDecoderError, match=r"taesd folder not found.*official EchoMimic release"):
        load_tiny_decoder(tmp_path / "nowhere", torch.device("cpu"), torch.float32)


def test_folder_without_weights_is_a_clear_error(taesd_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((taesd_dir / "config.json").read_text())
    with pytest.raises(TinyDecoderError, match="no diffusion_pytorch_model"):
        load_tiny_decoder(tmp_path, torch.device("cpu"), torch.float32)


def test_mismatched_weights_are_a_clear_error(taesd_dir: Path, tmp_path: Path) -> None:
    """The real taesd config (64 channels) with narrow weights: the first mismatching key is named."""
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny"}))
    (tmp_path / "diffusion_pytorch_model.safetensors").symlink_to(taesd_dir / "diffusion_pytorch_model.safetensors")
    with pytest.raises(TinyDecoderError, match="shape"):
        load_tiny_decoder(tmp_path, torch.device("cpu"), torch.float32)


def test_a_vae_folder_is_not_a_tiny_autoencoder(conformance_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(conformance_dir, "vae_config") | {"_class_name": "AutoencoderKL"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TinyDecoderError, match="describes AutoencoderKL, not AutoencoderTiny"):
        load_tiny_decoder(tmp_path, torch.device("cpu"), torch.float32)


def test_latents_of_the_wrong_layout_are_refused(taesd_dir: Path) -> None:
    decoder = load_tiny_decoder(taesd_dir, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match=r"\[batch, 4, frames, height, width\]"):
        decoder.decode(torch.zeros(3, 4, 4, 6))
