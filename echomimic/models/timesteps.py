"""Timestep arguments of the UNets: a Python number, a 0-d tensor or one value per batch item."""

from __future__ import annotations

import torch


def timesteps_for_batch(timestep: torch.Tensor | float, batch_size: int, device: torch.device) -> torch.Tensor:
    """The timestep as a [batch_size] tensor on `device`."""
    timesteps = torch.as_tensor(timestep, device=device)
    if timesteps.ndim == 0:
        timesteps = timesteps[None]
    if timesteps.shape != (1,) and timesteps.shape != (batch_size,):
        raise ValueError(f"timestep must be a scalar or have shape ({batch_size},), got {tuple(timesteps.shape)}")
    return timesteps.expand(batch_size)
