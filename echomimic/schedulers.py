"""The noise scheduler EchoMimic samples with: diffusers' `DDIMScheduler`, configured as the official inference does.

The official `configs/inference/inference_v2.yaml` gives `noise_scheduler_kwargs`; everything else is the
`DDIMScheduler` default. With `v_prediction`, betas rescaled to zero terminal SNR and `trailing` spacing, 6 steps
land on timesteps [999, 832, 666, 499, 332, 166], and ᾱ at t=999 is exactly 0 (the first step starts from pure
noise).
"""

from __future__ import annotations

from typing import Any

from diffusers.schedulers.scheduling_ddim import DDIMScheduler

INFERENCE_V2_NOISE_SCHEDULER_KWARGS: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}
"""`noise_scheduler_kwargs` of the official `inference_v2.yaml`, unchanged."""


def make_ddim_scheduler() -> DDIMScheduler:
    """A fresh DDIM scheduler configured as the official accelerated inference."""
    scheduler: DDIMScheduler = DDIMScheduler(**INFERENCE_V2_NOISE_SCHEDULER_KWARGS)
    return scheduler
