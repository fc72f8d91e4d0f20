"""The SD 1.5 UNet skeleton both EchoMimic UNets are built on: each level's widths, its samplers, and the skips.

With `block_out_channels` [C0, C1, C2, C3] the encoder has one down block per width. Down block i turns
C(i-1) channels (C0 for the first) into Ci, and every down block but the last halves the resolution. `conv_in`,
every down layer and every downsampler leave a skip state. The decoder mirrors the encoder with one layer more per
block; each up layer concatenates the previous output with the latest unused skip state, and every up block but the
last doubles the resolution back to the size of the skip states it hands on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

Skips = tuple[torch.Tensor, ...]


@dataclass(frozen=True, slots=True)
class DownLevel:
    in_channels: int
    out_channels: int
    add_downsample: bool
    downscale: int
    """How many times smaller than the latent this level's feature maps are (1, 2, 4, 8)."""


@dataclass(frozen=True, slots=True)
class UpLevel:
    in_channels: int
    """Width of the deepest skip state the block consumes: the input width of the mirrored down block."""
    prev_output_channel: int
    out_channels: int
    add_upsample: bool
    downscale: int
    """How many times smaller than the latent this level's feature maps are (8, 4, 2, 1)."""


def down_levels(block_out_channels: Sequence[int]) -> list[DownLevel]:
    last = len(block_out_channels) - 1
    return [
        DownLevel(
            in_channels=block_out_channels[max(i - 1, 0)],
            out_channels=width,
            add_downsample=i < last,
            downscale=2**i,
        )
        for i, width in enumerate(block_out_channels)
    ]


def up_levels(block_out_channels: Sequence[int]) -> list[UpLevel]:
    widths = list(reversed(block_out_channels))
    last = len(widths) - 1
    return [
        UpLevel(
            in_channels=widths[min(i + 1, last)],
            prev_output_channel=widths[max(i - 1, 0)],
            out_channels=width,
            add_upsample=i < last,
            downscale=2 ** (last - i),
        )
        for i, width in enumerate(widths)
    ]


def up_resnet_in_channels(
    layer: int, num_layers: int, in_channels: int, prev_output_channel: int, out_channels: int
) -> int:
    """Up layer `layer` concatenates the previous output with the skip state of the mirrored down layer."""
    previous = prev_output_channel if layer == 0 else out_channels
    skip = in_channels if layer == num_layers - 1 else out_channels
    return previous + skip


def downsampler(channels: int, padding: int) -> nn.ModuleList:
    """The stride-2 conv of a down block, under the checkpoint's `downsamplers.0.conv` keys."""
    # name "op": diffusers registers the conv once, as `conv` (the name "conv" adds an alias)
    return nn.ModuleList([Downsample2D(channels, use_conv=True, out_channels=channels, padding=padding, name="op")])


def upsampler(channels: int) -> nn.ModuleList:
    """Nearest 2x upsampling and a conv, under the checkpoint's `upsamplers.0.conv` keys."""
    return nn.ModuleList([Upsample2D(channels, use_conv=True, out_channels=channels)])


def take_skips(skips: Skips, num_layers: int) -> tuple[Skips, Skips, tuple[int, int] | None]:
    """Split an up block's skip states off the stack: (its skips, the rest, the size its upsampler must reach).

    The upsampled output must match the next skip state left on the stack; None for the last up block.
    """
    block_skips, rest = skips[-num_layers:], skips[:-num_layers]
    upsample_size = (rest[-1].shape[2], rest[-1].shape[3]) if rest else None
    return block_skips, rest, upsample_size
