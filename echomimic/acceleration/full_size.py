"""The full-size EchoMimic networks, built from the configs of the official release without reading any weights.

`SD15_UNET_CONFIG` is the `unet/config.json` of `sd-image-variations-diffusers` (the SD 1.5 layout both EchoMimic
UNets are built from), `SD_VAE_FT_MSE_CONFIG` the `config.json` of `sd-vae-ft-mse`, and the tiny autoencoder is
diffusers' `AutoencoderTiny` with its default (taesd) layout. Build them under `torch.device("meta")` to count their
work with no memory, or on a GPU to time them with random weights.
"""

from __future__ import annotations

import inspect
from typing import Any

from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

from echomimic.models.face_locator import FaceLocator
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel
from echomimic.weights import (
    FACE_LOCATOR_BLOCK_OUT_CHANNELS,
    FACE_LOCATOR_CONDITIONING_CHANNELS,
    INFERENCE_V2_UNET_ADDITIONAL_KWARGS,
)

SD15_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
"""`sd-image-variations-diffusers/unet/config.json`, the base of both UNets (without its `_class_name` and
`_diffusers_version` entries)."""

SD_VAE_FT_MSE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
"""`sd-vae-ft-mse/config.json`."""


def denoising_unet() -> EchoUNet3DConditionModel:
    """The denoising UNet with its motion modules, as `echomimic.weights.load_echomimic` builds it."""
    unet: EchoUNet3DConditionModel = EchoUNet3DConditionModel.from_base_config(
        SD15_UNET_CONFIG, INFERENCE_V2_UNET_ADDITIONAL_KWARGS
    )
    return unet


def reference_unet() -> ReferenceUNet2DConditionModel:
    """Built from the options it takes: the base config's output head and cross-attention do not exist in it."""
    options = inspect.signature(ReferenceUNet2DConditionModel.__init__).parameters
    config = {key: value for key, value in SD15_UNET_CONFIG.items() if key in options}
    model: ReferenceUNet2DConditionModel = ReferenceUNet2DConditionModel.from_config(config)
    return model


def face_locator() -> FaceLocator:
    locator: FaceLocator = FaceLocator(
        conditioning_embedding_channels=SD15_UNET_CONFIG["block_out_channels"][0],
        conditioning_channels=FACE_LOCATOR_CONDITIONING_CHANNELS,
        block_out_channels=FACE_LOCATOR_BLOCK_OUT_CHANNELS,
    )
    return locator


def sd_vae() -> AutoencoderKL:
    vae: AutoencoderKL = AutoencoderKL.from_config(SD_VAE_FT_MSE_CONFIG)
    return vae


def tiny_autoencoder() -> AutoencoderTiny:
    """diffusers' `AutoencoderTiny` defaults are the taesd layout (64 channels, 3-3-3-1 decoder blocks)."""
    autoencoder: AutoencoderTiny = AutoencoderTiny()
    return autoencoder
