"""The face locator: encodes the face-region mask into features added to the denoising UNet's `conv_in` output.

Each video frame is encoded on its own by a small 2D conv stack: a 3x3 conv, then per width step a 3x3 conv
and a stride-2 3x3 conv (each followed by SiLU), then a 3x3 `conv_out` with no activation. Three width steps
downsample by 8, the VAE factor, so the output lines up with the latent grid.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class FaceLocator(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Maps a face mask [B, 1, F, H, W] with values in [0, 1] to features [B, C, F, H/8, W/8].

    `conditioning_embedding_channels` is C, the denoising UNet's first block width (320 at full size).
    """

    @register_to_config  # type: ignore[untyped-decorator]
    def __init__(
        self,
        conditioning_embedding_channels: int = 320,
        conditioning_channels: int = 1,
        block_out_channels: Sequence[int] = (16, 32, 96, 256),
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        blocks: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(block_out_channels):
            blocks.append(nn.Conv2d(width_in, width_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(width_in, width_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3, padding=1)
        # Zero-initialised like a ControlNet hint encoder, so an untrained locator leaves the UNet unchanged.
        for parameter in self.conv_out.parameters():
            nn.init.zeros_(parameter)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        if mask.ndim != 5:
            raise ValueError(f"face mask must be [batch, channels, frames, height, width]; got {tuple(mask.shape)}")
        batch, _, frames, _, _ = mask.shape
        x = mask.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [(b f), c, H, W]
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        x = self.conv_out(x)  # [(b f), C, H/8, W/8]
        features: torch.Tensor = x.unflatten(0, (batch, frames)).permute(0, 2, 1, 3, 4)  # [b, C, f, H/8, W/8]
        return features
