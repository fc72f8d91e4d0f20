"""Shared fixtures for the EchoMimic tests: where the official conformance data lives, and the tiny UNets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from echomimic.models import EchoUNet3DConditionModel, ReferenceUNet2DConditionModel
from echomimic.models.checkpoint_loading import load_denoising_unet_state, load_strict
from echomimic.models.unet_3d_denoising import FIXED_OFFICIAL_OPTIONS
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline, EchoMimicPipelineOutput


def tiny_tensors(conformance_dir: Path, relative_path: str) -> dict[str, torch.Tensor]:
    """A tiny safetensors file with float16 parameters widened to float32 (exact); other tensors as stored."""
    tensors = load_file(conformance_dir / "tiny" / relative_path)
    return {key: value.float() if value.dtype == torch.float16 else value for key, value in tensors.items()}


def tiny_config(conformance_dir: Path, name: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((conformance_dir / "tiny/configs" / f"{name}.json").read_text())
    return config


def assert_resolved_config_matches(model: EchoUNet3DConditionModel, official: dict[str, Any]) -> None:
    """Every field of the official resolved config equals ours; the options we fix are compared as fixed."""
    for key, value in official.items():
        if key.startswith("_"):
            continue
        ours = FIXED_OFFICIAL_OPTIONS[key] if key in FIXED_OFFICIAL_OPTIONS else model.config[key]
        assert (list(ours) if isinstance(ours, tuple) else ours) == value, key


def run_official_sampler_call(
    pipeline: EchoMimicPipeline, conformance_dir: Path, **options: Any
) -> EchoMimicPipelineOutput:
    """The call (e) recorded in `e_pipeline.json`, with its portrait, face mask, speech and initial noise.

    The speech is (d)'s `waveform`, which is what the official loader returns for the `d_audio.wav` it was given.
    """
    args = json.loads((conformance_dir / "tiny/e_pipeline.json").read_text())["args"]
    inputs = tiny_tensors(conformance_dir, "e_pipeline.safetensors")
    return pipeline(
        inputs["ref_image_uint8_hwc"].numpy(),
        inputs["face_mask"][0, 0, 0].numpy(),
        tiny_tensors(conformance_dir, "d_whisper.safetensors")["waveform"].numpy(),
        video_length=args["video_length"],
        fps=args["fps"],
        num_inference_steps=args["num_inference_steps"],
        guidance_scale=args["guidance_scale"],
        context_frames=args["context_frames"],
        context_overlap=args["context_overlap"],
        noise=inputs["initial_noise"],
        **options,
    )


def build_tiny_denoising_unet(conformance_dir: Path, **overrides: Any) -> EchoUNet3DConditionModel:
    """The tiny denoising UNet with the tiny weights, built and loaded the official way."""
    additional_kwargs = tiny_config(conformance_dir, "inference_v2_unet_additional_kwargs") | overrides
    model = EchoUNet3DConditionModel.from_base_config(
        tiny_config(conformance_dir, "unet_base_config"), additional_kwargs
    )
    load_denoising_unet_state(
        model,
        base_unet_state={},
        motion_module_state=tiny_tensors(conformance_dir, "weights/motion_module.safetensors"),
        denoising_state=tiny_tensors(conformance_dir, "weights/denoising_unet.safetensors"),
    )
    return model.eval()


@pytest.fixture(scope="session")
def tiny_reference_unet(conformance_dir: Path) -> ReferenceUNet2DConditionModel:
    model = ReferenceUNet2DConditionModel.from_config(tiny_config(conformance_dir, "unet_base_config"))
    load_strict(model, tiny_tensors(conformance_dir, "weights/reference_unet.safetensors"), "reference_unet")
    return model.eval()


@pytest.fixture(scope="session")
def tiny_denoising_unet(conformance_dir: Path) -> EchoUNet3DConditionModel:
    return build_tiny_denoising_unet(conformance_dir)
