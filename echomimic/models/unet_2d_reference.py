"""The reference UNet: an SD 1.5 UNet run once on the portrait latent to write the reference banks.

Built from the sd-image-variations `unet/config.json`. As in the official checkpoint it has no cross-attention
(transformer blocks hold only norm1, attn1, norm3, ff) and no output head (no conv_norm_out / conv_out): its only
product is the banks. `attention_head_dim` holds the number of heads, as in SD 1.x configs.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UpBlock2D
from torch import nn

from echomimic.models.blocks_2d_reference import (
    ReferenceCrossAttnDownBlock2D,
    ReferenceCrossAttnUpBlock2D,
    ReferenceMidBlock2D,
)
from echomimic.models.reference_attention import ReferenceWriterBlock
from echomimic.models.reference_banks import BankLayout, ReferenceBanks
from echomimic.models.timesteps import timesteps_for_batch
from echomimic.models.unet_layout import Skips, down_levels, take_skips, up_levels


class ReferenceUNet2DConditionModel(ModelMixin, ConfigMixin):  # type: ignore[misc]
    @register_to_config  # type: ignore[untyped-decorator]
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        mid_block_type: str = "UNetMidBlock2DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        attention_head_dim: int = 8,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if mid_block_type != "UNetMidBlock2DCrossAttn":
            raise ValueError(f"unsupported mid_block_type {mid_block_type!r}")
        time_embed_dim = block_out_channels[0] * 4
        num_heads = attention_head_dim

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)

        down_blocks: list[nn.Module] = []
        for block_type, down in zip(down_block_types, down_levels(block_out_channels), strict=True):
            if block_type == "CrossAttnDownBlock2D":
                down_blocks.append(
                    ReferenceCrossAttnDownBlock2D(
                        down.in_channels,
                        down.out_channels,
                        time_embed_dim,
                        layers_per_block,
                        norm_eps,
                        norm_num_groups,
                        num_heads,
                        add_downsample=down.add_downsample,
                        downsample_padding=downsample_padding,
                    )
                )
            elif block_type == "DownBlock2D":
                down_blocks.append(
                    DownBlock2D(
                        in_channels=down.in_channels,
                        out_channels=down.out_channels,
                        temb_channels=time_embed_dim,
                        num_layers=layers_per_block,
                        resnet_eps=norm_eps,
                        resnet_groups=norm_num_groups,
                        add_downsample=down.add_downsample,
                        downsample_padding=downsample_padding,
                    )
                )
            else:
                raise ValueError(f"unsupported down block type {block_type!r}")

        up_blocks: list[nn.Module] = []
        for block_type, up in zip(up_block_types, up_levels(block_out_channels), strict=True):
            if block_type == "CrossAttnUpBlock2D":
                up_blocks.append(
                    ReferenceCrossAttnUpBlock2D(
                        up.in_channels,
                        up.prev_output_channel,
                        up.out_channels,
                        time_embed_dim,
                        layers_per_block + 1,
                        norm_eps,
                        norm_num_groups,
                        num_heads,
                        add_upsample=up.add_upsample,
                    )
                )
            elif block_type == "UpBlock2D":
                up_blocks.append(
                    UpBlock2D(
                        in_channels=up.in_channels,
                        prev_output_channel=up.prev_output_channel,
                        out_channels=up.out_channels,
                        temb_channels=time_embed_dim,
                        num_layers=layers_per_block + 1,
                        resnet_eps=norm_eps,
                        resnet_groups=norm_num_groups,
                        add_upsample=up.add_upsample,
                    )
                )
            else:
                raise ValueError(f"unsupported up block type {block_type!r}")

        # Registered down, up, mid as in the official class: this fixes the checkpoint key order and the reader
        # pairing order of the banks.
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks)
        self.mid_block = ReferenceMidBlock2D(
            block_out_channels[-1], time_embed_dim, norm_eps, norm_num_groups, num_heads
        )

        self.bank_layout = BankLayout.from_blocks(
            (name, module.width) for name, module in self.named_modules() if isinstance(module, ReferenceWriterBlock)
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> ReferenceBanks:
        """The write pass: sample [B, 4, h, w] (the portrait latent), timestep (0 in EchoMimic) -> banks."""
        timesteps = timesteps_for_batch(timestep, sample.shape[0], sample.device)
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))  # [B, 4*C0]

        layout = self.bank_layout
        written: dict[str, torch.Tensor] = {}
        hidden_states = self.conv_in(sample)  # [B, C0, h, w]
        skips: Skips = (hidden_states,)
        for i, down_block in enumerate(self.down_blocks):
            if isinstance(down_block, ReferenceCrossAttnDownBlock2D):
                hidden_states, block_skips, banks = down_block(hidden_states, temb)
                written.update(zip(layout.blocks_in(f"down_blocks.{i}"), banks, strict=True))
            else:
                hidden_states, block_skips = down_block(hidden_states, temb)
            skips += block_skips

        hidden_states, banks = self.mid_block(hidden_states, temb)
        written.update(zip(layout.blocks_in("mid_block"), banks, strict=True))

        for i, up_block in enumerate(self.up_blocks):
            block_skips, skips, upsample_size = take_skips(skips, len(up_block.resnets))  # type: ignore[arg-type]
            if isinstance(up_block, ReferenceCrossAttnUpBlock2D):
                hidden_states, banks = up_block(hidden_states, block_skips, temb, upsample_size)
                written.update(zip(layout.blocks_in(f"up_blocks.{i}"), banks, strict=True))
            else:
                hidden_states = up_block(hidden_states, block_skips, temb, upsample_size)

        return ReferenceBanks({name: written[name] for name in layout.order})
