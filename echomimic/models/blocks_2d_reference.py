"""The reference UNet's attention blocks: SD 1.5 down/mid/up blocks whose transformers write reference banks.

Resnet and sampler layout equals diffusers' `CrossAttnDownBlock2D`, `UNetMidBlock2DCrossAttn` and
`CrossAttnUpBlock2D`; the blocks without attention are diffusers' own `DownBlock2D` and `UpBlock2D`.
Each forward returns the banks of its transformer blocks in registration order.
"""

from __future__ import annotations

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from echomimic.models.reference_attention import ReferenceWriterTransformer
from echomimic.models.unet_layout import Skips, downsampler, up_resnet_in_channels, upsampler


class ReferenceCrossAttnDownBlock2D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        resnet_eps: float,
        resnet_groups: int,
        num_heads: int,
        add_downsample: bool,
        downsample_padding: int,
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(
            ReferenceWriterTransformer(out_channels, num_heads, resnet_groups) for _ in range(num_layers)
        )
        self.resnets = nn.ModuleList(
            ResnetBlock2D(
                in_channels=in_channels if i == 0 else out_channels,
                out_channels=out_channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
            )
            for i in range(num_layers)
        )
        self.downsamplers = downsampler(out_channels, downsample_padding) if add_downsample else None

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor
    ) -> tuple[torch.Tensor, Skips, list[torch.Tensor]]:
        """hidden_states [N, C_in, h, w], temb [N, T] -> (hidden [N, C, h', w'], skip states, banks)."""
        skips: Skips = ()
        banks: list[torch.Tensor] = []
        for resnet, attention in zip(self.resnets, self.attentions, strict=True):
            hidden_states = resnet(hidden_states, temb)
            hidden_states, bank = attention(hidden_states)
            banks.append(bank)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips, banks


class ReferenceMidBlock2D(nn.Module):
    def __init__(
        self, channels: int, temb_channels: int, resnet_eps: float, resnet_groups: int, num_heads: int
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([ReferenceWriterTransformer(channels, num_heads, resnet_groups)])
        self.resnets = nn.ModuleList(
            ResnetBlock2D(
                in_channels=channels,
                out_channels=channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
            )
            for _ in range(2)
        )

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """hidden_states [N, C, h, w], temb [N, T] -> (hidden [N, C, h, w], banks)."""
        hidden_states = self.resnets[0](hidden_states, temb)
        banks: list[torch.Tensor] = []
        for attention, resnet in zip(self.attentions, self.resnets[1:], strict=True):
            hidden_states, bank = attention(hidden_states)
            banks.append(bank)
            hidden_states = resnet(hidden_states, temb)
        return hidden_states, banks


class ReferenceCrossAttnUpBlock2D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        resnet_eps: float,
        resnet_groups: int,
        num_heads: int,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(
            ReferenceWriterTransformer(out_channels, num_heads, resnet_groups) for _ in range(num_layers)
        )
        self.resnets = nn.ModuleList(
            ResnetBlock2D(
                in_channels=up_resnet_in_channels(i, num_layers, in_channels, prev_output_channel, out_channels),
                out_channels=out_channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
            )
            for i in range(num_layers)
        )
        self.upsamplers = upsampler(out_channels) if add_upsample else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: Skips,
        temb: torch.Tensor,
        upsample_size: tuple[int, int] | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """hidden_states [N, C_prev, h, w], skips (last used first), temb [N, T] -> (hidden [N, C, h', w'], banks)."""
        banks: list[torch.Tensor] = []
        for resnet, attention, skip in zip(self.resnets, self.attentions, reversed(skips), strict=True):
            hidden_states = resnet(torch.cat([hidden_states, skip], dim=1), temb)
            hidden_states, bank = attention(hidden_states)
            banks.append(bank)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states, banks
