"""Denoising one live window whose leading (and trailing) frames are pinned to latents already decided.

The live renderer draws a talking head window by window. The frames before a window are already on screen, so
the window is denoised together with them (its context) and those frames are pinned: at every step, before the
UNet sees them, their latents are the shown clean latents brought to that step's noise level with the frame's own
noise (`scheduler.add_noise`), and after the last step they are the shown latents exactly. The motion module then
sees the real past at every step, and the first new frame continues the last shown one. The closing window of an
utterance pins its last frames the same way to the idle portrait, so the face lands on the idle pose.

With the trailing, zero-terminal-SNR schedule the first step is pure noise everywhere (ᾱ = 0 there), so the pins
act from the second step on. DDIM with η = 0 on a pinned frame moves it along the same noise direction, so
re-pinning at each step is consistent with the sampler, not a correction fighting it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

from echomimic.pipelines.pipeline_echomimic import (
    INITIAL_NOISE_CLAMP,
    EchoMimicPipeline,
    ReferenceConditioning,
    velocity_through_clean_estimate,
)


@dataclass(frozen=True)
class PinnedFrames:
    """Clean latents [1, 4, P, h, w] that frames `positions` of the window (P of them) must end on."""

    positions: list[int]
    latents: torch.Tensor


@torch.no_grad()
def denoise_window(
    pipeline: EchoMimicPipeline,
    reference: ReferenceConditioning,
    audio_features: torch.Tensor,
    noise: torch.Tensor,
    pinned: PinnedFrames | None,
    num_inference_steps: int,
    guidance_scale: float,
    should_stop: Callable[[], bool] = lambda: False,
) -> torch.Tensor | None:
    """Clean latents [1, 4, F, h, w] of a window of F frames; None when `should_stop()` turned true after a step.

    `audio_features` is [F, 50, 384]; `noise` is the raw Gaussian draw [1, 4, F, h, w] of the window's frames.
    """
    device, dtype = pipeline.device, pipeline.working_dtype
    scheduler = pipeline.scheduler
    guided = guidance_scale > 1.0

    # 1. Timesteps, and the pinned frames' noise.
    scheduler.set_timesteps(num_inference_steps, device=device)
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    noise = noise.to(device=device, dtype=dtype)
    if pinned is not None:
        pinned_latents = pinned.latents.to(device=device, dtype=dtype)  # [1, 4, P, h, w]
        pinned_noise = noise[:, :, pinned.positions]

    # 2. Conditioning batches: [unconditional, conditional] under guidance, else conditional alone.
    audio = audio_features.to(device=device, dtype=dtype)[None]  # [1, F, 50, 384]
    face, banks = reference.face_features, reference.banks
    if guided:
        audio = torch.cat([torch.zeros_like(audio), audio])
        face = torch.cat([torch.zeros_like(face), face])
        banks = banks.repeat_for_cfg()

    # 3. The clamped initial draw, then the loop.
    latents = noise.clamp(-INITIAL_NOISE_CLAMP, INITIAL_NOISE_CLAMP) * scheduler.init_noise_sigma  # [1, 4, F, h, w]
    for timestep in scheduler.timesteps:
        if pinned is not None:
            latents[:, :, pinned.positions] = scheduler.add_noise(pinned_latents, pinned_noise, timestep.reshape(1))
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]) if guided else latents, timestep)
        velocity = pipeline.denoising_unet(
            model_input,
            timestep,
            audio_features=audio,
            face_features=face,
            reference_banks=banks,
            uncond_first_half=guided,
        )  # [1 or 2, 4, F, h, w]
        velocity = velocity_through_clean_estimate(velocity, model_input, alphas_cumprod[timestep])
        if guided:
            unconditional, conditional = velocity.chunk(2)
            velocity = unconditional + guidance_scale * (conditional - unconditional)
        latents = cast(DDIMSchedulerOutput, scheduler.step(velocity, timestep, latents, eta=0.0)).prev_sample
        if should_stop():
            return None
    if pinned is not None:
        latents[:, :, pinned.positions] = pinned_latents
    return latents
