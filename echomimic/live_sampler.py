"""Denoising live windows, several sessions' at once, with frames pinned to latents already decided.

The live renderer draws a talking head window by window. The frames before a window are already on screen, so
the window is denoised together with them (its context) and those frames are pinned: at every step, before the
UNet sees them, their latents are the shown clean latents brought to that step's noise level with the frame's own
noise (q(x_t | x_0), as `scheduler.add_noise` does), and after the last step they are the shown latents exactly.
The motion module then sees the real past at every step, and the first new frame continues the last shown one.
The closing window of an utterance pins its last frames the same way to the idle portrait, so the face lands on
the idle pose.

With the trailing, zero-terminal-SNR schedule the first step is pure noise everywhere (ᾱ = 0 there), so the pins
act from the second step on. DDIM with η = 0 on a pinned frame moves it along the same noise direction, so
re-pinning at each step is consistent with the sampler, not a correction fighting it.

Windows of the same length from several sessions run as one batch: each item brings its own portrait (latent,
banks, face features), audio, noise and pins. An item whose `should_stop` turns true leaves the batch at the next
step boundary; the others go on.

With a deep-feature interval N > 1, only every Nth step runs the whole UNet; the steps between run its outermost
level and reuse the deeper levels' output from the last full step (`EchoUNet3DConditionModel.forward`'s
`deep_features`), which removes most of the work of those steps. Adjacent steps see nearly the same deep features,
and the outermost level still sees each step's latents, pins and audio. When an item leaves the batch the next step
runs in full, so no reused feature ever belongs to another item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import torch
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

from echomimic.acceleration.host_transfer import to_device
from echomimic.models.reference_banks import ReferenceBanks
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


@dataclass(frozen=True)
class WindowInputs:
    """One window to denoise: F frames of one portrait."""

    reference: ReferenceConditioning
    audio_features: torch.Tensor
    """[F, 50, 384]"""
    noise: torch.Tensor
    """[1, 4, F, h, w] the raw Gaussian draw of the window's frames."""
    pinned: PinnedFrames | None
    should_stop: Callable[[], bool] = lambda: False


class DenoisingUNet(Protocol):
    """`EchoUNet3DConditionModel`, or the same behind an acceleration backend (`AcceleratedUNet`)."""

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
        deep_features: torch.Tensor | None = None,
    ) -> torch.Tensor: ...

    def forward_keeping_deep_features(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@torch.no_grad()
def denoise_windows(
    pipeline: EchoMimicPipeline,
    unet: DenoisingUNet,
    windows: list[WindowInputs],
    num_inference_steps: int,
    guidance_scale: float,
    deep_feature_interval: int = 1,
) -> list[torch.Tensor | None]:
    """Clean latents [1, 4, F, h, w] of each window (all of the same F), or None for one that was stopped. The
    pipeline gives the scheduler and the working device and dtype; `unet` denoises, in full every
    `deep_feature_interval` steps and reusing deep features in between."""
    if deep_feature_interval < 1:
        raise ValueError(f"deep_feature_interval must be at least 1, got {deep_feature_interval}")
    device, dtype = pipeline.device, pipeline.working_dtype
    scheduler = pipeline.scheduler
    guided = guidance_scale > 1.0
    batch = len(windows)

    # 1. Timesteps and the batch's conditioning, noise and pins, item by item along the batch axis. What starts on
    # the host crosses once, here, through pinned memory, so no step below waits for a copy (see `host_transfer`).
    scheduler.set_timesteps(num_inference_steps)
    timesteps = scheduler.timesteps.tolist()  # host integers: the scheduler indexes its tables with them
    alphas_cumprod = scheduler.alphas_cumprod  # host table: each step reads its ᾱ from it, not from the device
    timesteps_on_device = to_device(scheduler.timesteps, device)
    noise = to_device(torch.cat([window.noise for window in windows]).to(dtype), device)  # [B, 4, F, h, w]
    audio = torch.stack([to_device(window.audio_features, device) for window in windows]).to(dtype)  # [B, F, ...]
    face = torch.cat([to_device(window.reference.face_features, device) for window in windows]).to(dtype)
    banks = ReferenceBanks.batch([window.reference.banks for window in windows])
    host_pinned_mask = torch.zeros(batch, 1, noise.shape[2], 1, 1, dtype=torch.bool)
    pinned_latents = torch.zeros_like(noise)
    for item, window in enumerate(windows):
        if window.pinned is not None:
            host_pinned_mask[item, :, window.pinned.positions] = True
            positions = to_device(torch.tensor(window.pinned.positions), device)
            pinned_latents[item].index_copy_(1, positions, to_device(window.pinned.latents[0], device).to(dtype))
    pinned_mask = to_device(host_pinned_mask, device)

    # 2. The clamped initial draw, then the loop; stopped items leave the batch between steps.
    active = list(range(batch))
    latents = noise.clamp(-INITIAL_NOISE_CLAMP, INITIAL_NOISE_CLAMP) * scheduler.init_noise_sigma
    deep_features: torch.Tensor | None = None
    for step, timestep in enumerate(timesteps):
        alpha_bar = float(alphas_cumprod[timestep])
        pins = alpha_bar**0.5 * pinned_latents + (1 - alpha_bar) ** 0.5 * noise  # q(x_t | x_0), as add_noise
        latents = torch.where(pinned_mask, pins, latents)
        model_input = torch.cat([latents, latents]) if guided else latents
        model_input = scheduler.scale_model_input(model_input, timestep)
        conditioning = (
            model_input,
            timesteps_on_device[step],
            torch.cat([torch.zeros_like(audio), audio]) if guided else audio,
            torch.cat([torch.zeros_like(face), face]) if guided else face,
            banks.repeat_for_cfg() if guided else banks,
            guided,
        )
        if deep_features is not None and step % deep_feature_interval != 0:
            velocity = unet(*conditioning, deep_features=deep_features)  # [B or 2B, 4, F, h, w]
        elif deep_feature_interval > 1 and step + 1 < len(timesteps):
            velocity, deep_features = unet.forward_keeping_deep_features(*conditioning)
        else:
            velocity = unet(*conditioning)
        velocity = velocity_through_clean_estimate(velocity, model_input, alphas_cumprod[timestep])
        if guided:
            unconditional, conditional = velocity.chunk(2)
            velocity = unconditional + guidance_scale * (conditional - unconditional)
        latents = cast(DDIMSchedulerOutput, scheduler.step(velocity, timestep, latents, eta=0.0)).prev_sample
        keep = [position for position, item in enumerate(active) if not windows[item].should_stop()]
        if len(keep) < len(active):
            if not keep:
                return [None] * batch
            deep_features = None
            index = to_device(torch.tensor(keep), device)
            latents, noise, audio, face = (tensor.index_select(0, index) for tensor in (latents, noise, audio, face))
            pinned_mask, pinned_latents = pinned_mask.index_select(0, index), pinned_latents.index_select(0, index)
            banks = banks.select(index)
            active = [active[position] for position in keep]
    latents = torch.where(pinned_mask, pinned_latents, latents)

    results: list[torch.Tensor | None] = [None] * batch
    for position, item in enumerate(active):
        results[item] = latents[position : position + 1]
    return results
