"""The token folding around the UNet's transformer blocks (diffusers `Transformer2DModel` layout, 1x1 convs).

A feature map [N, C, h, w] is group-normalised, projected by a 1x1 conv and read row-major as N token sets
[N, h*w, C]; after the block the tokens are projected back and added to the input. SD 1.5 has one transformer block per
spatial transformer (the checkpoint's `transformer_blocks.0`); subclasses own its call.
"""

from __future__ import annotations

import torch
from torch import nn


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, norm_num_groups: int, transformer_block: nn.Module) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([transformer_block])
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def to_tokens(self, feature_map: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feature_map.shape
        hidden: torch.Tensor = self.proj_in(self.norm(feature_map))  # [N, C, h, w]
        return hidden.permute(0, 2, 3, 1).reshape(n, h * w, c)  # [N, h*w, C]

    def from_tokens(self, tokens: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feature_map.shape
        hidden = tokens.reshape(n, h, w, c).permute(0, 3, 1, 2)  # [N, C, h, w]
        projected: torch.Tensor = self.proj_out(hidden)
        return projected + feature_map
