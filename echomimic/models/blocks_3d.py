"""The denoising UNet's blocks: SD 1.5 blocks over video frames, with reference reading and motion modules.

Frames are folded into the batch as (b f), frame index fastest, everywhere outside the motion modules. The
official 3D blocks use "inflated" convolutions and GroupNorms, which apply the 2D layer to each frame on its
own; on the folded layout those are exactly diffusers' 2D `ResnetBlock2D`, `Downsample2D` and `Upsample2D`.
Within a layer the order is resnet -> reference/audio transformer -> motion module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from echomimic.models.motion_module import MotionModule
from echomimic.models.reference_attention import ReferenceReaderTransformer


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

    def transformer(self, channels: int) -> ReferenceReaderTransformer:
        return ReferenceReaderTransformer(
            channels, self.num_heads, self.norm_num_groups, self.cross_attention_dim, self.audio_attention_scale
        )

    def motion_modules(self, channels: int, count: int, enabled: bool) -> nn.ModuleList | None:
        return (
            nn.ModuleList(MotionModule(channels, **self.motion_module_kwargs) for _ in range(count))
            if enabled
            else None
        )


def _downsampler(channels: int, padding: int) -> nn.ModuleList:
    # name "op": diffusers registers the conv once, as `conv` (the name "conv" adds an alias)
    return nn.ModuleList([Downsample2D(channels, use_conv=True, out_channels=channels, padding=padding, name="op")])


def _upsampler(channels: int) -> nn.ModuleList:
    return nn.ModuleList([Upsample2D(channels, use_conv=True, out_channels=channels)])


def _apply_motion(
    motion_modules: nn.ModuleList | None, index: int, hidden_states: torch.Tensor, cond: FrameConditioning
) -> torch.Tensor:
    if motion_modules is None:
        return hidden_states
    moved: torch.Tensor = motion_modules[index](hidden_states, cond.num_frames)
    return moved


class DownBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        layers: LayerFactory,
        use_motion_module: bool,
        add_downsample: bool,
        downsample_padding: int,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            layers.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.motion_modules = layers.motion_modules(out_channels, num_layers, use_motion_module)
        self.downsamplers = _downsampler(out_channels, downsample_padding) if add_downsample else None

    def forward(
        self, hidden_states: torch.Tensor, cond: FrameConditioning
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """hidden_states [(B F), C_in, h, w] -> (hidden [(B F), C, h', w'], skip states)."""
        skips: tuple[torch.Tensor, ...] = ()
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, cond.temb)
            hidden_states = _apply_motion(self.motion_modules, i, hidden_states, cond)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class CrossAttnDownBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        layers: LayerFactory,
        use_motion_module: bool,
        add_downsample: bool,
        downsample_padding: int,
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(layers.transformer(out_channels) for _ in range(num_layers))
        self.resnets = nn.ModuleList(
            layers.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.motion_modules = layers.motion_modules(out_channels, num_layers, use_motion_module)
        self.downsamplers = _downsampler(out_channels, downsample_padding) if add_downsample else None

    def forward(
        self, hidden_states: torch.Tensor, cond: FrameConditioning, banks: list[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """hidden_states [(B F), C_in, h, w], one bank per transformer block -> (hidden, skip states)."""
        skips: tuple[torch.Tensor, ...] = ()
        for i, (resnet, attention) in enumerate(zip(self.resnets, self.attentions, strict=True)):
            hidden_states = resnet(hidden_states, cond.temb)
            hidden_states = attention(
                hidden_states, cond.audio_tokens, banks[i], cond.num_frames, cond.uncond_first_half
            )
            hidden_states = _apply_motion(self.motion_modules, i, hidden_states, cond)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class MidBlock3DCrossAttn(nn.Module):
    """resnet -> transformer -> motion module -> resnet (the official `UNetMidBlock3DCrossAttn`)."""

    def __init__(self, channels: int, layers: LayerFactory, use_motion_module: bool) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([layers.transformer(channels)])
        self.resnets = nn.ModuleList(layers.resnet(channels, channels) for _ in range(2))
        self.motion_modules = layers.motion_modules(channels, 1, use_motion_module)

    def forward(self, hidden_states: torch.Tensor, cond: FrameConditioning, banks: list[torch.Tensor]) -> torch.Tensor:
        """hidden_states [(B F), C, h, w], one bank per transformer block -> [(B F), C, h, w]."""
        hidden_states = self.resnets[0](hidden_states, cond.temb)
        for i, (attention, resnet) in enumerate(zip(self.attentions, self.resnets[1:], strict=True)):
            hidden_states = attention(
                hidden_states, cond.audio_tokens, banks[i], cond.num_frames, cond.uncond_first_half
            )
            hidden_states = _apply_motion(self.motion_modules, i, hidden_states, cond)
            hidden_states = resnet(hidden_states, cond.temb)
        return hidden_states


def _up_resnet_in_channels(
    i: int, num_layers: int, in_channels: int, prev_output_channel: int, out_channels: int
) -> int:
    """Layer i concatenates the previous output with the skip state of the mirrored down layer."""
    previous = prev_output_channel if i == 0 else out_channels
    skip = in_channels if i == num_layers - 1 else out_channels
    return previous + skip


class UpBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        layers: LayerFactory,
        use_motion_module: bool,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            layers.resnet(
                _up_resnet_in_channels(i, num_layers, in_channels, prev_output_channel, out_channels), out_channels
            )
            for i in range(num_layers)
        )
        self.motion_modules = layers.motion_modules(out_channels, num_layers, use_motion_module)
        self.upsamplers = _upsampler(out_channels) if add_upsample else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: tuple[torch.Tensor, ...],
        cond: FrameConditioning,
        upsample_size: tuple[int, int] | None,
    ) -> torch.Tensor:
        """hidden_states [(B F), C_prev, h, w], skips (last used first) -> [(B F), C, h', w']."""
        for i, (resnet, skip) in enumerate(zip(self.resnets, reversed(skips), strict=True)):
            hidden_states = resnet(torch.cat([hidden_states, skip], dim=1), cond.temb)
            hidden_states = _apply_motion(self.motion_modules, i, hidden_states, cond)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


class CrossAttnUpBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        layers: LayerFactory,
        use_motion_module: bool,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(layers.transformer(out_channels) for _ in range(num_layers))
        self.resnets = nn.ModuleList(
            layers.resnet(
                _up_resnet_in_channels(i, num_layers, in_channels, prev_output_channel, out_channels), out_channels
            )
            for i in range(num_layers)
        )
        self.motion_modules = layers.motion_modules(out_channels, num_layers, use_motion_module)
        self.upsamplers = _upsampler(out_channels) if add_upsample else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: tuple[torch.Tensor, ...],
        cond: FrameConditioning,
        banks: list[torch.Tensor],
        upsample_size: tuple[int, int] | None,
    ) -> torch.Tensor:
        """hidden_states [(B F), C_prev, h, w], skips (last used first), one bank per block -> [(B F), C, h', w']."""
        layers = zip(self.resnets, self.attentions, reversed(skips), strict=True)
        for i, (resnet, attention, skip) in enumerate(layers):
            hidden_states = resnet(torch.cat([hidden_states, skip], dim=1), cond.temb)
            hidden_states = attention(
                hidden_states, cond.audio_tokens, banks[i], cond.num_frames, cond.uncond_first_half
            )
            hidden_states = _apply_motion(self.motion_modules, i, hidden_states, cond)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states
