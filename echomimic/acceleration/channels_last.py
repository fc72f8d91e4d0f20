"""Channels-last memory format for the convolutions of a network: weights stored NHWC, and every 4D input made NHWC.

Tensor cores run fp16 convolutions in NHWC; a conv given NCHW tensors pays for a transposition on each side. Storing
the weights channels-last is not enough here: the denoising UNet folds frames into the batch with reshapes that
hand its convolutions contiguous (NCHW) tensors again, and GroupNorm may copy back to contiguous. So each Conv2d
also gets a forward pre-hook that makes its 4D input channels-last. Whether the copies that hook costs are repaid
by faster convolutions depends on the network and the GPU: `bench/gpu.py --layouts` measures it, and the option
that turns it on (`--channels-last`) is off by default.

Converting changes memory layout only, never values: outputs match the contiguous network within float tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

MEMORY_FORMAT = torch.channels_last


@dataclass(frozen=True)
class ChannelsLastConvolutions:
    """The convolutions `convert_to_channels_last` converted, and their hooks, so the conversion can be undone."""

    convolutions: list[nn.Conv2d]
    hooks: list[RemovableHandle]

    def undo(self) -> None:
        """Back to contiguous weights and unhooked convolutions (the bench measures both layouts on one network)."""
        for hook in self.hooks:
            hook.remove()
        for convolution in self.convolutions:
            _store_weight(convolution, torch.contiguous_format)


def convert_to_channels_last(network: nn.Module) -> ChannelsLastConvolutions:
    """Store `network`'s Conv2d weights channels-last and hook each Conv2d to make its 4D input channels-last, in
    place. Convert a network once (or `undo` first)."""
    convolutions = [module for module in network.modules() if isinstance(module, nn.Conv2d)]
    for convolution in convolutions:
        _store_weight(convolution, MEMORY_FORMAT)
    hooks = [convolution.register_forward_pre_hook(_channels_last_input) for convolution in convolutions]
    return ChannelsLastConvolutions(convolutions, hooks)


def is_channels_last(tensor: torch.Tensor) -> bool:
    """A 4D tensor laid out NHWC (what the hooked convolutions receive)."""
    return tensor.ndim == 4 and tensor.is_contiguous(memory_format=MEMORY_FORMAT)


def _channels_last_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    sample = args[0]
    if sample.ndim != 4 or is_channels_last(sample):
        return None
    return (sample.contiguous(memory_format=MEMORY_FORMAT), *args[1:])


def _store_weight(convolution: nn.Conv2d, memory_format: torch.memory_format) -> None:
    convolution.weight.data = convolution.weight.data.contiguous(memory_format=memory_format)
