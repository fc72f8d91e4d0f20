"""How far each lever of the `realtime` profile moves the output from `quality`, and how much work it removes.

    python -m bench.profile_levers [--conformance DIR]

Output change is measured on the conformance fixtures' tiny random weights (CPU, float32): one window of context +
new frames, context not pinned, of the fixture's portrait, face mask and whisper features, rendered through the live
sampler with `quality` and with one lever changed, compared on the decoded new frames as the relative L2 error
‖lever − quality‖ / ‖quality‖ and PSNR. Work is counted on the full-size networks at 512x512
(`echomimic.acceleration.flops`), since the tiny networks' proportions are not the real ones.

Levers: fewer denoising steps; fewer context frames (the new frames keep their noise, as per-frame seeds give them);
reuse of the UNet's deep features between steps; a smaller frame (the portrait and mask resized, the same noise
field sampled on the smaller grid, the frames scaled back up to compare); the tiny decoder. The tiny decoder's output
change needs the real taesd weights against the real SD VAE, which the tiny fixtures cannot stand in for, so only its
work is reported. A different noise seed gives the scale of an unrelated sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from safetensors.torch import load_file

from bench.lite_fps import cpu_model
from echomimic.acceleration.flops import count_flops
from echomimic.acceleration.profiles import QUALITY, REALTIME, GenerationProfile
from echomimic.acceleration.tiny_decoder import FrameDecoder
from echomimic.live_sampler import WindowInputs as SamplerWindow
from echomimic.live_sampler import denoise_windows
from echomimic.models import (
    EchoUNet3DConditionModel,
    FaceLocator,
    ReferenceUNet2DConditionModel,
    load_denoising_unet_state,
    load_strict,
)
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline
from echomimic.schedulers import make_ddim_scheduler
from echomimic.weights import FACE_LOCATOR_BLOCK_OUT_CHANNELS

DEFAULT_CONFORMANCE_DIR = Path(__file__).resolve().parents[2] / "shared/conformance/echomimic_v1"
SEED = 420
OTHER_SEED = 421
FIXTURE_LATENT = (16, 24)
"""The fixtures' portrait is 128x192 pixels."""


@dataclass(frozen=True)
class WindowInputs:
    image: np.ndarray
    face_mask: np.ndarray
    audio_features: torch.Tensor
    """[F, 50, 384] whisper tokens of the quality window's frames."""
    noise: torch.Tensor
    """[1, 4, F, h, w], each frame from its own seed, as the live renderer draws it."""


@dataclass(frozen=True)
class Lever:
    name: str
    full_size: GenerationProfile
    """The quality profile with this lever applied, at full size, for the work count."""
    tiny: GenerationProfile | None
    """The same at the fixtures' size, for the output change; None where the fixtures cannot measure it."""
    seed: int = SEED


def frame_seeded_noise(frames: int, latent: tuple[int, int], seed: int) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(seed * 1000 + frame) for frame in range(frames)]
    return torch.cat([torch.randn(1, 4, 1, *latent, generator=generator) for generator in generators], dim=2)


def render_window(pipeline: EchoMimicPipeline, inputs: WindowInputs, profile: GenerationProfile) -> torch.Tensor:
    """The new frames [new, 3, H, W] in [0, 1] at the fixtures' size, from a window rendered as `profile` says."""
    frames = profile.frames_per_window
    total = inputs.noise.shape[2]
    noise = inputs.noise[:, :, total - frames :]
    audio = inputs.audio_features[total - frames :]
    image, mask = inputs.image, inputs.face_mask
    scale = profile.size / QUALITY.size
    if scale != 1.0:
        height, width = (round(side * scale) for side in image.shape[:2])
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
        rows = torch.arange(height // 8) * noise.shape[3] // (height // 8)
        columns = torch.arange(width // 8) * noise.shape[4] // (width // 8)
        noise = noise[:, :, :, rows][:, :, :, :, columns]  # the same field on the smaller grid, still unit variance
    window = SamplerWindow(pipeline.prepare_reference(image, mask), audio, noise, pinned=None)
    (latents,) = denoise_windows(
        pipeline, pipeline.denoising_unet, [window], profile.num_inference_steps, 1.0, profile.deep_feature_interval
    )
    assert latents is not None  # nothing stops it
    pictures = FrameDecoder.sd_vae(pipeline.vae).decode(latents[:, :, profile.context_frames :])
    if scale != 1.0:
        pictures = F.interpolate(pictures, size=inputs.image.shape[:2], mode="bilinear", align_corners=False)
    return pictures


def relative_error(frames: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(frames - reference) / torch.linalg.vector_norm(reference))


def psnr(frames: torch.Tensor, reference: torch.Tensor) -> float:
    mse = float(((frames - reference) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def levers() -> list[Lever]:
    """Each lever alone, then the realtime combination (with the SD VAE on the fixtures), then a different seed."""
    small_size = REALTIME.size
    found: list[Lever] = []
    for steps in (4, 3, 2):
        profile = dataclasses.replace(QUALITY, name=f"{steps} steps", num_inference_steps=steps)
        found.append(Lever(profile.name, profile, profile))
    for context in (1, 0):
        profile = dataclasses.replace(QUALITY, name=f"{context} context frames", context_frames=context)
        found.append(Lever(profile.name, profile, profile))
    for steps, interval in ((6, 2), (6, 3), (4, 2)):
        profile = dataclasses.replace(
            QUALITY,
            name=f"{steps} steps, deep features reused, whole UNet every {interval}",
            num_inference_steps=steps,
            deep_feature_interval=interval,
        )
        found.append(Lever(profile.name, profile, profile))
    smaller = dataclasses.replace(QUALITY, name=f"{small_size}x{small_size}", size=small_size)
    found.append(Lever(smaller.name, smaller, smaller))
    tiny_decoder = dataclasses.replace(QUALITY, name="tiny decoder", decoder="tiny")
    found.append(Lever(tiny_decoder.name, tiny_decoder, None))
    realtime_with_vae = dataclasses.replace(REALTIME, decoder="vae")
    found.append(Lever("realtime (SD VAE on the fixtures)", REALTIME, realtime_with_vae))
    found.append(Lever(f"quality, seed {OTHER_SEED} (an unrelated sample)", QUALITY, QUALITY, OTHER_SEED))
    return found


def tiny_pipeline(conformance_dir: Path) -> EchoMimicPipeline:
    """The pipeline on the fixtures' tiny weights (float16 values widened to float32, exactly), without whisper:
    the fixtures carry the whisper features."""
    tiny = conformance_dir / "tiny"

    def weights(name: str) -> dict[str, torch.Tensor]:
        return {key: value.float() for key, value in load_file(tiny / f"weights/{name}.safetensors").items()}

    def config(name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((tiny / f"configs/{name}.json").read_text())
        return loaded

    base = config("unet_base_config")
    reference_unet = ReferenceUNet2DConditionModel.from_config(base)
    load_strict(reference_unet, weights("reference_unet"), "reference_unet")
    denoising_unet = EchoUNet3DConditionModel.from_base_config(base, config("inference_v2_unet_additional_kwargs"))
    load_denoising_unet_state(denoising_unet, {}, weights("motion_module"), weights("denoising_unet"))
    face_locator = FaceLocator(base["block_out_channels"][0], 1, FACE_LOCATOR_BLOCK_OUT_CHANNELS)
    load_strict(face_locator, weights("face_locator"), "face_locator")
    vae = AutoencoderKL.from_config(config("vae_config"))
    load_strict(vae, weights("vae"), "vae")
    modules = (reference_unet, denoising_unet, face_locator, vae)
    for module in modules:
        module.eval().requires_grad_(False)
    return EchoMimicPipeline(vae, reference_unet, denoising_unet, face_locator, None, make_ddim_scheduler())


def load_inputs(conformance_dir: Path, seed: int) -> WindowInputs:
    pipeline_inputs = load_file(conformance_dir / "tiny/e_pipeline.safetensors")
    chunks = load_file(conformance_dir / "tiny/d_whisper.safetensors")["chunks"]  # [50, 50, 384]
    return WindowInputs(
        image=pipeline_inputs["ref_image_uint8_hwc"].numpy(),
        face_mask=pipeline_inputs["face_mask"][0, 0, 0].numpy(),
        audio_features=chunks[: QUALITY.frames_per_window],
        noise=frame_seeded_noise(QUALITY.frames_per_window, FIXTURE_LATENT, seed),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--conformance",
        type=Path,
        default=Path(os.environ.get("ECHOMIMIC_CONFORMANCE_DIR", DEFAULT_CONFORMANCE_DIR)),
        help="the EchoMimic v1 conformance folder (default: shared/ beside the checkout)",
    )
    args = parser.parse_args(argv)
    pipeline = tiny_pipeline(args.conformance)
    print(
        f"CPU {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}; tiny conformance weights, one "
        f"window of {QUALITY.window_frames} new + {QUALITY.context_frames} context frames at 192x128"
    )
    inputs = {SEED: load_inputs(args.conformance, SEED), OTHER_SEED: load_inputs(args.conformance, OTHER_SEED)}
    quality_frames = render_window(pipeline, inputs[SEED], QUALITY)
    quality_work = count_flops(QUALITY).tflop_per_output_frame
    print(f"\nquality: {quality_work:.2f} TFLOP per frame at 512x512\n")
    print("| lever | relative error vs quality | PSNR vs quality (dB) | TFLOP per frame at full size | work removed |")
    print("|---|---|---|---|---|")
    for lever in levers():
        work = count_flops(lever.full_size).tflop_per_output_frame
        if lever.tiny is None:
            error, quality_psnr = "n/a (needs taesd weights)", "n/a"
        else:
            frames = render_window(pipeline, inputs[lever.seed], lever.tiny)
            error, quality_psnr = f"{relative_error(frames, quality_frames):.3f}", f"{psnr(frames, quality_frames):.1f}"
        removed = 1 - work / quality_work
        print(f"| {lever.name} | {error} | {quality_psnr} | {work:.2f} | {100 * removed:.0f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
