"""The denoising UNet: SD 1.5 over video frames, reading reference banks, attending to audio, with motion modules.

    sample [B, 4, F, h, w] -> conv_in per frame (+ face-locator features) -> down/mid/up blocks -> conv_out
Each layer runs a resnet, a reader transformer (self-attention over the frame plus its reference bank, then
cross-attention to that frame's audio tokens scaled by `audio_attention_scale`) and a motion module across
frames. Built like the official `from_pretrained_2d`: the SD 1.5 base UNet config plus `unet_additional_kwargs`
(`from_base_config`). `attention_head_dim` holds the number of heads, as in SD 1.x configs.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from echomimic.models.blocks_3d import DownBlock3D, FrameConditioning, LayerFactory, MidBlock3DCrossAttn, UpBlock3D
from echomimic.models.reference_attention import ReferenceReaderBlock
from echomimic.models.reference_banks import BankLayout, ReferenceBanks
from echomimic.models.timesteps import timesteps_for_batch
from echomimic.models.unet_layout import Skips, down_levels, take_skips, up_levels

# Options of the official class that EchoMimic leaves at these values; other values are not implemented.
FIXED_OFFICIAL_OPTIONS: dict[str, Any] = {
    "center_input_sample": False,
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "use_linear_projection": False,
    "class_embed_type": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "resnet_time_scale_shift": "default",
    "act_fn": "silu",
    "mid_block_scale_factor": 1,
    "use_inflated_groupnorm": True,
    "motion_module_type": "Vanilla",
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
}


class EchoUNet3DConditionModel(ModelMixin, ConfigMixin):  # type: ignore[misc]
    @register_to_config  # type: ignore[untyped-decorator]
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "DownBlock3D",
        ),
        mid_block_type: str = "UNetMidBlock3DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 384,
        attention_head_dim: int = 8,
        use_motion_module: bool = True,
        motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8),
        motion_module_mid_block: bool = True,
        motion_module_decoder_only: bool = False,
        motion_module_kwargs: dict[str, Any] | None = None,
        audio_attention_scale: float = 3.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if mid_block_type != "UNetMidBlock3DCrossAttn":
            raise ValueError(f"unsupported mid_block_type {mid_block_type!r}")
        time_embed_dim = block_out_channels[0] * 4
        layers = LayerFactory(
            temb_channels=time_embed_dim,
            norm_num_groups=norm_num_groups,
            resnet_eps=norm_eps,
            num_heads=attention_head_dim,
            cross_attention_dim=cross_attention_dim,
            audio_attention_scale=audio_attention_scale,
            motion_module_kwargs=dict(motion_module_kwargs or {}),
        )

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)

        down_blocks: list[nn.Module] = []
        for block_type, down in zip(down_block_types, down_levels(block_out_channels), strict=True):
            down_blocks.append(
                DownBlock3D(
                    in_channels=down.in_channels,
                    out_channels=down.out_channels,
                    num_layers=layers_per_block,
                    layers=layers,
                    with_cross_attention=_has_cross_attention(block_type, "CrossAttnDownBlock3D", "DownBlock3D"),
                    use_motion_module=use_motion_module
                    and not motion_module_decoder_only
                    and down.downscale in motion_module_resolutions,
                    add_downsample=down.add_downsample,
                    downsample_padding=downsample_padding,
                )
            )

        up_blocks: list[nn.Module] = []
        for block_type, up in zip(up_block_types, up_levels(block_out_channels), strict=True):
            up_blocks.append(
                UpBlock3D(
                    in_channels=up.in_channels,
                    prev_output_channel=up.prev_output_channel,
                    out_channels=up.out_channels,
                    num_layers=layers_per_block + 1,
                    layers=layers,
                    with_cross_attention=_has_cross_attention(block_type, "CrossAttnUpBlock3D", "UpBlock3D"),
                    use_motion_module=use_motion_module and up.downscale in motion_module_resolutions,
                    add_upsample=up.add_upsample,
                )
            )

        # Registered down, up, mid as in the official class: this fixes the checkpoint key order and the reader
        # pairing order of the banks.
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks)
        self.mid_block = MidBlock3DCrossAttn(
            block_out_channels[-1], layers, use_motion_module=use_motion_module and motion_module_mid_block
        )

        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

        self.bank_layout = BankLayout.from_blocks(
            (name, module.width) for name, module in self.named_modules() if isinstance(module, ReferenceReaderBlock)
        )

    @property
    def deep_feature_channels(self) -> int:
        """Channels of the deep features, what enters the last up block: the second level's width."""
        return up_levels(self.config["block_out_channels"])[-1].prev_output_channel

    @property
    def bank_order(self) -> list[str]:
        """The reader blocks in the official pairing order (see `BankLayout`)."""
        return self.bank_layout.order

    def project_banks(self, banks: ReferenceBanks) -> ReferenceBanks:
        """`banks` with every reader block's key and value projections of its bank added, computed once here so
        that no denoising call repeats them."""
        readers = {name: module for name, module in self.named_modules() if isinstance(module, ReferenceReaderBlock)}
        with torch.no_grad():
            projected = {name: readers[name].project_bank(bank.to(self.dtype)) for name, bank in banks.tensors.items()}
        return ReferenceBanks(banks.tensors, projected)

    @classmethod
    def from_base_config(
        cls, base_unet_config: dict[str, Any], unet_additional_kwargs: dict[str, Any]
    ) -> EchoUNet3DConditionModel:
        """Builds the model as the official `from_pretrained_2d` does: the SD 1.5 UNet config with 2D block types
        turned 3D, overridden by `unet_additional_kwargs` (inference_v2.yaml). Weights are loaded separately."""
        config = {key: value for key, value in base_unet_config.items() if not key.startswith("_")}
        config["down_block_types"] = [name.replace("2D", "3D") for name in config["down_block_types"]]
        config["up_block_types"] = [name.replace("2D", "3D") for name in config["up_block_types"]]
        config["mid_block_type"] = "UNetMidBlock3DCrossAttn"
        config.update(unet_additional_kwargs)
        unsupported = {
            key: config[key]
            for key, fixed_value in FIXED_OFFICIAL_OPTIONS.items()
            if key in config and config[key] != fixed_value
        }
        if unsupported:
            implemented = {key: FIXED_OFFICIAL_OPTIONS[key] for key in unsupported}
            raise ValueError(f"unsupported UNet options {unsupported}; implemented are only {implemented}")
        init_config = {key: value for key, value in config.items() if key not in FIXED_OFFICIAL_OPTIONS}
        return cast("EchoUNet3DConditionModel", cls.from_config(init_config))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
        deep_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicts the model output for a window of frames.

        sample [B, 4, F, h, w]; timestep scalar or [B]; audio_features [B, F, tokens, D]; face_features
        [B, C0, 1 or F, h, w] or None; reference_banks with batch B. With `uncond_first_half` the first B/2 items
        attend without the banks (the official CFG reader). Returns [B, 4, F, h, w].

        With `deep_features` (from `forward_keeping_deep_features` on the same window at an earlier step) only the
        outermost level runs: conv_in, the first down block's layers, the last up block and conv_out, with the
        deeper levels' output taken from `deep_features` instead of computed.
        """
        output, _ = self._denoise(
            sample, timestep, audio_features, face_features, reference_banks, uncond_first_half, deep_features
        )
        return output

    def forward_keeping_deep_features(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `forward`, running every level, and also returning the deep features: what enters the last up block,
        [(B F), C0, h, w], for later steps of the same window to reuse."""
        output, deep_features = self._denoise(
            sample, timestep, audio_features, face_features, reference_banks, uncond_first_half, None
        )
        return output, deep_features

    def _denoise(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool,
        deep_features: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, num_frames, height, width = sample.shape
        if uncond_first_half and batch % 2 != 0:
            raise ValueError(f"uncond_first_half needs an even batch, got {batch}")
        if audio_features.shape[:2] != (batch, num_frames):
            raise ValueError(
                f"audio_features must be [{batch}, {num_frames}, tokens, dim] for this sample, "
                f"got {list(audio_features.shape)}"
            )
        missing = [name for name in self.bank_order if name not in reference_banks.tensors]
        if missing:
            raise ValueError(f"reference banks lack {len(missing)} blocks, e.g. {missing[0]!r}")
        deep_shape = (batch * num_frames, self.deep_feature_channels, height, width)
        if deep_features is not None and tuple(deep_features.shape) != deep_shape:
            raise ValueError(
                f"deep_features must be {list(deep_shape)} for this sample, got {list(deep_features.shape)}"
            )

        timesteps = timesteps_for_batch(timestep, batch, sample.device)
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))  # [B, 4*C0]
        cond = FrameConditioning(
            temb=temb.repeat_interleave(num_frames, dim=0),  # [(B F), 4*C0]
            audio_tokens=audio_features.flatten(0, 1),  # [(B F), tokens, D]
            num_frames=num_frames,
            uncond_first_half=uncond_first_half,
        )

        frames = sample.transpose(1, 2).flatten(0, 1)  # [(B F), 4, h, w]
        hidden_states = self.conv_in(frames)  # [(B F), C0, h, w]
        if face_features is not None:
            face = face_features.transpose(1, 2).expand(batch, num_frames, -1, height, width)  # [B, F, C0, h, w]
            hidden_states = hidden_states + face.flatten(0, 1)

        layout = self.bank_layout
        skips: Skips = (hidden_states,)
        if deep_features is None:
            for i, down_block in enumerate(self.down_blocks):
                down_banks = layout.banks_in(f"down_blocks.{i}", reference_banks)
                hidden_states, block_skips = down_block(hidden_states, cond, down_banks)
                skips += block_skips
            hidden_states = self.mid_block(hidden_states, cond, layout.banks_in("mid_block", reference_banks))
            for i, up_block in enumerate(self.up_blocks[:-1]):
                block_skips, skips, upsample_size = take_skips(skips, len(up_block.resnets))  # type: ignore[arg-type]
                up_banks = layout.banks_in(f"up_blocks.{i}", reference_banks)
                hidden_states = up_block(hidden_states, block_skips, cond, up_banks, upsample_size)
            deep_features = hidden_states
        else:
            # The first down block's downsampled output feeds only the deeper levels, which are not run.
            outer_banks = layout.banks_in("down_blocks.0", reference_banks)
            _, block_skips = self.down_blocks[0](hidden_states, cond, outer_banks, downsample=False)
            skips += block_skips

        last = len(self.up_blocks) - 1
        outer_up = self.up_blocks[last]
        block_skips, skips, upsample_size = take_skips(skips, len(outer_up.resnets))  # type: ignore[arg-type]
        up_banks = layout.banks_in(f"up_blocks.{last}", reference_banks)
        hidden_states = outer_up(deep_features, block_skips, cond, up_banks, upsample_size)

        hidden_states = self.conv_out(self.conv_act(self.conv_norm_out(hidden_states)))  # [(B F), 4, h, w]
        output: torch.Tensor = hidden_states.unflatten(0, (batch, num_frames)).transpose(1, 2)  # [B, 4, F, h, w]
        return output, deep_features


def _has_cross_attention(block_type: str, with_attention: str, without_attention: str) -> bool:
    if block_type not in (with_attention, without_attention):
        raise ValueError(f"unsupported block type {block_type!r}; expected {with_attention!r} or {without_attention!r}")
    return block_type == with_attention
