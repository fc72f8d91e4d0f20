"""Frame decoders: latents to pixels with the SD VAE or the tiny autoencoder, a whole window per batched call.

The tiny autoencoder is diffusers' `AutoencoderTiny` in the taesd layout (madebyollin's distillation of the SD VAE):
0.141 TFLOP per 512x512 frame against the SD VAE's 2.51. The official EchoMimic release does not include it, so it
is read from a local folder the user names (diffusers layout: `config.json` and `diffusion_pytorch_model.safetensors`
or `.bin`); nothing is downloaded. Without a folder the SD VAE decodes, and the fallback is logged.

Both decoders take latents as the sampler leaves them (scaled by 0.18215): taesd was trained on that scaled space,
the SD VAE decodes them divided by 0.18215. A window is decoded in one call (or in chunks of `frames_per_call`) with
no host synchronisation, and the frames stay on the decoder's device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

from echomimic.acceleration.profiles import DecoderKind
from echomimic.pipelines.pipeline_echomimic import VAE_LATENT_SCALE
from echomimic.weights import WeightsError, load_diffusers_model

logger = logging.getLogger(__name__)

SD_LATENT_CHANNELS = 4
TINY_AUTOENCODER_CLASS = "AutoencoderTiny"


class TinyDecoderError(ValueError):
    """The taesd folder is missing, incomplete, or holds something other than a tiny autoencoder for SD latents."""


@dataclass(frozen=True)
class FrameDecoder:
    """Decodes windows of latents into frames with one decoder network."""

    kind: DecoderKind
    network: AutoencoderKL | AutoencoderTiny
    latent_divisor: float
    """What the sampler's latents are divided by before the network sees them."""
    frames_per_call: int | None = None
    """Frames decoded per network call; None decodes the whole window at once (fastest, most activation memory)."""

    @classmethod
    def sd_vae(cls, vae: AutoencoderKL, frames_per_call: int | None = None) -> FrameDecoder:
        return cls("vae", vae, VAE_LATENT_SCALE, frames_per_call)

    @classmethod
    def tiny(cls, autoencoder: AutoencoderTiny, frames_per_call: int | None = None) -> FrameDecoder:
        return cls("tiny", autoencoder, 1.0, frames_per_call)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 4, F, h, w] scaled by 0.18215 -> float32 frames [(B F), 3, 8h, 8w] in [0, 1], batch-major,
        on the network's device."""
        if latents.ndim != 5 or latents.shape[1] != SD_LATENT_CHANNELS:
            raise ValueError(f"latents must be [batch, 4, frames, height, width], got {list(latents.shape)}")
        parameter = next(self.network.parameters())
        flat = latents.transpose(1, 2).flatten(0, 1).to(parameter.device, parameter.dtype)  # [(B F), 4, h, w]
        chunks = torch.split(flat, self.frames_per_call) if self.frames_per_call else (flat,)
        images = torch.cat([self.network.decode(chunk / self.latent_divisor).sample for chunk in chunks])
        return (images.float() / 2 + 0.5).clamp(0, 1)  # the networks decode to [-1, 1]


def load_tiny_decoder(
    folder: Path, device: torch.device, dtype: torch.dtype, frames_per_call: int | None = None
) -> FrameDecoder:
    """The tiny autoencoder's decoder from a local taesd-layout diffusers folder, on `device` in `dtype`."""
    if not folder.is_dir():
        raise TinyDecoderError(
            f"{folder}: taesd folder not found (the official EchoMimic release has no tiny autoencoder; "
            "name a local diffusers AutoencoderTiny folder such as madebyollin/taesd)"
        )
    try:
        autoencoder = load_diffusers_model(folder, _build_tiny_autoencoder, device, dtype)
    except WeightsError as error:
        raise TinyDecoderError(f"{error} (expected a diffusers AutoencoderTiny folder in the taesd layout)") from error
    return FrameDecoder.tiny(autoencoder, frames_per_call)


def make_frame_decoder(
    kind: DecoderKind, vae: AutoencoderKL, taesd_dir: Path | None, frames_per_call: int | None = None
) -> FrameDecoder:
    """The decoder a profile asks for. "tiny" without a folder falls back to the SD VAE, and says so in the log;
    "tiny" with a folder that cannot be used raises `TinyDecoderError`. The tiny decoder goes where the VAE is."""
    if kind == "vae":
        return FrameDecoder.sd_vae(vae, frames_per_call)
    if taesd_dir is None:
        logger.warning(
            "the tiny decoder was asked for but no taesd folder was given, and the official EchoMimic release has "
            "none: decoding with the SD VAE (about 18 times the decoder work)"
        )
        return FrameDecoder.sd_vae(vae, frames_per_call)
    decoder = load_tiny_decoder(taesd_dir, vae.device, vae.dtype, frames_per_call)
    logger.info("decoding with the tiny autoencoder from %s", taesd_dir)
    return decoder


def _build_tiny_autoencoder(config: dict[str, Any]) -> AutoencoderTiny:
    declared = config.get("_class_name", TINY_AUTOENCODER_CLASS)
    if declared != TINY_AUTOENCODER_CLASS:
        raise ValueError(f"config.json describes {declared}, not {TINY_AUTOENCODER_CLASS}")
    autoencoder: AutoencoderTiny = AutoencoderTiny.from_config(config)
    if autoencoder.config["latent_channels"] != SD_LATENT_CHANNELS:
        raise ValueError(
            f"latent_channels is {autoencoder.config['latent_channels']}; SD latents have {SD_LATENT_CHANNELS}"
        )
    return autoencoder
