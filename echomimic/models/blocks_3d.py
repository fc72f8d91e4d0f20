"""The denoising UNet's blocks: SD 1.5 blocks over video frames, with reference reading and motion modules.

Frames are folded into the batch as (b f), frame index fastest, everywhere outside the motion modules. The
official 3D blocks use "inflated" convolutions and GroupNorms, which apply the 2D layer to each frame on its
own; on the folded layout those are exactly diffusers' 2D `ResnetBlock2D`, `Downsample2D` and `Upsample2D`.
Within a layer the order is resnet -> reference/audio transformer -> motion module. The official
`CrossAttnDownBlock3D`/`DownBlock3D` (and the up pair) differ only in the transformers, so one class here serves
both, with `with_cross_attention` choosing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from echomimic.models.motion_module import MotionModule
from echomimic.models.reference_attention import ReferenceReaderTransformer
from echomimic.models.reference_banks import Bank
from echomimic.models.unet_layout import Skips, downsampler, up_resnet_in_channels, upsampler


@dataclass(frozen=True)
class FrameConditioning:
    """What every layer of the denoising UNet receives besides the hidden states."""

    temb: torch.Tensor  # [(B F), T]
    audio_tokens: torch.Tensor  # [(B F), tokens, D]
    num_frames: int
    uncond_first_half: bool


@dataclass(frozen=True)
class LayerFactory:
    """The hyper-parameters every layer of the denoising UNet shares, and the layers built from them."""

    temb_channels: int
    norm_num_groups: int
    resnet_eps: float
    num_heads: int
    cross_attention_dim: int
    audio_attention_scale: float
    motion_module_kwargs: dict[str, Any]

    def resnet(self, in_channels: int, out_channels: int) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels=in_channels,
            out_channels=out_channels,
            temb_channels=self.temb_channels,
            eps=self.resnet_eps,
            groups=self.norm_num_groups,
        )

    def transformers(self, channels: int, count: int, enabled: bool) -> nn.ModuleList | None:
        if not enabled:
            return None
        return nn.ModuleList(
            ReferenceReaderTransformer(
                channels, self.num_heads, self.norm_num_groups, self.cross_attention_dim, self.audio_attention_scale
            )
            for _ in range(count)
        )

    def motion_modules(self, channels: int, count: int, enabled: bool) -> nn.ModuleList | None:
        if not enabled:
            return None
        return nn.ModuleList(MotionModule(channels, **self.motion_module_kwargs) for _ in range(count))


def _attention_and_motion(
    attentions: nn.ModuleList | None,
    motion_modules: nn.ModuleList | None,
    index: int,
    hidden_states: torch.Tensor,
    cond: FrameConditioning,
    banks: list[Bank],
) -> torch.Tensor:
    """Layer `index`'s reader transformer and motion module (each when the block has them), after its resnet."""
    if attentions is not None:
        hidden_states = attentions[index](
            hidden_states, cond.audio_tokens, banks[index], cond.num_frames, cond.uncond_first_half
        )
    if motion_modules is not None:
        hidden_states = motion_modules[index](hidden_states, cond.num_frames)
    return hidden_states


class DownBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        layers: LayerFactory,
        with_cross_attention: bool,
        use_motion_module: bool,
        add_downsample: bool,
        downsample_padding: int,
    ) -> None:
        super().__init__()
        # Registration order follows the official checkpoint's key order.
        self.attentions = layers.transformers(out_channels, num_layers, with_cross_attention)
        self.resnets = nn.ModuleList(
            layers.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.motion_modules = layers.motion_modules(out_channels, num_layers, use_motion_module)
        self.downsamplers = downsampler(out_channels, downsample_padding) if add_downsample else None

    def forward(
        self, hidden_states: torch.Tensor, cond: FrameConditioning, banks: list[Bank], downsample: bool = True
    ) -> tuple[torch.Tensor, Skips]:
        """hidden_states [(B F), C_in, h, w], one bank per transformer -> (hidden [(B F), C, h', w'], skip states).
        Without `downsample` the block stops after its layers, even if it has a downsampler."""
        skips: Skips = ()
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, cond.temb)
            hidden_states = _attention_and_motion(self.attentions, self.motion_modules, i, hidden_states, cond, banks)
            skips += (hidden_states,)
        if self.downsamplers is not None and downsample:
            for sampler in self.downsamplers:
                hidden_states = sampler(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class MidBlock3DCrossAttn(nn.Module):
    """resnet -> transformer -> motion module -> resnet (the official `UNetMidBlock3DCrossAttn`)."""

    def __init__(self, channels: int, layers: LayerFactory, use_motion_module: bool) -> None:
        super().__init__()
        self.attentions = layers.transformers(channels, 1, enabled=True)
        self.resnets = nn.ModuleList(layers.resnet(channels, channels) for _ in range(2))
        self.motion_modules = layers.motion_modules(channels, 1, use_motion_module)

    def forward(self, hidden_states: torch.Tensor, cond: FrameConditioning, banks: list[Bank]) -> torch.Tensor:
        """hidden_states [(B F), C, h, w], one bank per transformer -> [(B F), C, h, w]."""
        hidden_states = self.resnets[0](hidden_states, cond.temb)
        for i, resnet in enumerate(self.resnets[1:]):
            hidden_states = _attention_and_motion(self.attentions, self.motion_modules, i, hidden_states, cond, banks)
            hidden_states = resnet(hidden_states, cond.temb)
        return hidden_states


class UpBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        layers: LayerFactory,
        with_cross_attention: bool,
        use_motion_module: bool,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        self.attentions = layers.transformers(out_channels, num_layers, with_cross_attention)
        self.resnets = nn.ModuleList(
            layers.resnet(
                up_resnet_in_channels(i, num_layers, in_channels, prev_output_channel, out_channels), out_channels
            )
            for i in range(num_layers)
        )
        self.motion_modules = layers.motion_modules(out_channels, num_layers, use_motion_module)
        self.upsamplers = upsampler(out_channels) if add_upsample else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: Skips,
        cond: FrameConditioning,
        banks: list[Bank],
        upsample_size: tuple[int, int] | None,
    ) -> torch.Tensor:
        """hidden_states [(B F), C_prev, h, w], skips (last used first), one bank per transformer
        -> [(B F), C, h', w']."""
        for i, (resnet, skip) in enumerate(zip(self.resnets, reversed(skips), strict=True)):
            hidden_states = resnet(torch.cat([hidden_states, skip], dim=1), cond.temb)
            hidden_states = _attention_and_motion(self.attentions, self.motion_modules, i, hidden_states, cond, banks)
        if self.upsamplers is not None:
            for sampler in self.upsamplers:
                hidden_states = sampler(hidden_states, upsample_size)
        return hidden_states
