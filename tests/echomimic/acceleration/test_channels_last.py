"""Channels-last: the UNet and both frame decoders compute what they compute contiguous, their convolutions really
receive NHWC inputs, the conversion can be undone, and the renderer converts both networks when asked."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from torch import nn

from echomimic.acceleration.backends import accelerate_denoising_unet
from echomimic.acceleration.channels_last import convert_to_channels_last, is_channels_last
from echomimic.acceleration.profiles import QUALITY
from echomimic.acceleration.tiny_decoder import FrameDecoder
from echomimic.acceleration.window_program import WindowShape, example_window_inputs
from echomimic.models import ReferenceUNet2DConditionModel
from echomimic.streaming_renderer import EchoMimicRenderer
from tests.echomimic.acceleration.test_tiny_decoder import TINY_TAESD_CONFIG
from tests.echomimic.conftest import build_tiny_denoising_unet, tiny_config, tiny_tensors
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

ATOL = RTOL = 1e-4
"""A different memory layout changes the order of float sums only (about 1e-6 for the decoders); a real bug is
O(1)."""
FLOAT64_ATOL = FLOAT64_RTOL = 1e-10
"""The UNet compares in float64: in float32 some random inputs amplify the reordered sums to 1e-3 (its GroupNorms
and softmaxes), while in float64 both layouts agree to 1e-14."""
SHAPE = WindowShape(1, 6, 8, 8)


@contextmanager
def conv_input_layouts(network: nn.Module) -> Iterator[list[bool]]:
    """Whether each Conv2d call of `network` got a channels-last input, in call order. Registered after any
    conversion hook, so it sees what the convolution itself receives."""
    seen: list[bool] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(is_channels_last(args[0]))

    hooks = [module.register_forward_pre_hook(record) for module in network.modules() if isinstance(module, nn.Conv2d)]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def _unet_call(conformance_dir: Path, reference_unet: ReferenceUNet2DConditionModel) -> tuple[nn.Module, dict]:
    unet = build_tiny_denoising_unet(conformance_dir).double()  # a copy of its own: conversion is in place
    reference_unet = copy.deepcopy(reference_unet).double()
    sample, timesteps, audio, face, *_ = example_window_inputs(unet, reference_unet, SHAPE)
    with torch.no_grad():
        banks = unet.project_banks(reference_unet(torch.randn(1, 4, 8, 8, dtype=torch.float64), 0))
    call = {
        "sample": sample,
        "timestep": timesteps[0],
        "audio_features": audio,
        "face_features": face,
        "reference_banks": banks,
    }
    return unet, call


@pytest.mark.parametrize("converted", [False, True], ids=["contiguous", "channels-last"])
def test_unet_convolutions_get_channels_last_inputs_only_when_converted(
    conformance_dir: Path,
    tiny_reference_unet: ReferenceUNet2DConditionModel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    converted: bool,
) -> None:
    unet, call = _unet_call(conformance_dir, tiny_reference_unet)
    with torch.no_grad():
        contiguous_output = unet(**call)
    with caplog.at_level(logging.INFO, logger="echomimic.acceleration.backends"):
        accelerated = accelerate_denoising_unet(
            unet, [SHAPE], requested="eager", engine_dir=tmp_path, channels_last=converted
        )
    with conv_input_layouts(unet) as seen, torch.no_grad():
        output = accelerated(**call)
    assert seen and all(seen) is converted
    assert ("convolutions in channels-last" in caplog.text) is converted
    torch.testing.assert_close(output, contiguous_output, atol=FLOAT64_ATOL, rtol=FLOAT64_RTOL)


def _sd_vae(conformance_dir: Path) -> AutoencoderKL:
    vae: AutoencoderKL = AutoencoderKL.from_config(tiny_config(conformance_dir, "vae_config"))
    vae.load_state_dict(tiny_tensors(conformance_dir, "weights/vae.safetensors"))
    return vae.eval()


def _tiny_autoencoder(conformance_dir: Path) -> AutoencoderTiny:
    torch.manual_seed(0)
    return AutoencoderTiny(**TINY_TAESD_CONFIG).eval()


@pytest.mark.parametrize(
    ("make_decoder", "build"), [(FrameDecoder.sd_vae, _sd_vae), (FrameDecoder.tiny, _tiny_autoencoder)]
)
def test_decoders_match_contiguous_and_undo_restores_contiguous(
    conformance_dir: Path, make_decoder: Any, build: Any
) -> None:
    decoder: FrameDecoder = make_decoder(build(conformance_dir))
    latents = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with conv_input_layouts(decoder.network) as seen:
        contiguous = decoder.decode(latents)
    assert seen and not all(seen)

    conversion = convert_to_channels_last(decoder.network)
    assert all(is_channels_last(convolution.weight) for convolution in conversion.convolutions)
    with conv_input_layouts(decoder.network) as seen:
        channels_last = decoder.decode(latents)
    assert seen and all(seen)
    torch.testing.assert_close(channels_last, contiguous, atol=ATOL, rtol=RTOL)

    conversion.undo()
    with conv_input_layouts(decoder.network) as seen:
        decoder.decode(latents)
    assert seen and not all(seen)
    assert all(convolution.weight.is_contiguous() for convolution in conversion.convolutions)


def test_the_renderer_converts_the_unet_and_the_decoder_when_asked(conformance_dir: Path, tmp_path: Path) -> None:
    renderer = EchoMimicRenderer.from_weights(
        write_fake_weights_folder(conformance_dir, tmp_path / "weights"),
        device="cpu",
        profile=replace(QUALITY, size=64, num_inference_steps=1),
        backend="eager",
        engine_dir=tmp_path / "engines",
        channels_last=True,
    )
    assert is_channels_last(renderer.pipeline.denoising_unet.conv_in.weight)
    decoder_convolutions = [module for module in renderer.decoder.network.modules() if isinstance(module, nn.Conv2d)]
    assert decoder_convolutions and all(is_channels_last(conv.weight) for conv in decoder_convolutions)
