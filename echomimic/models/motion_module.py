"""The motion module: a transformer across frames at every spatial position (AnimateDiff's "Vanilla" module).

    x [(B F), C, h, w] -> GroupNorm per frame -> tokens [(B F), h*w, C] -> proj_in
      -> for each temporal self-attention: LayerNorm, add sinusoidal pe[:F], attend across the F frames, residual
      -> feed-forward residual -> proj_out -> back to [(B F), C, h, w] + x
Only temporal self-attention ("Temporal_Self") exists in EchoMimic; the module never sees the audio or reference.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the transformer sine/cosine table to a sequence; `pe` [1, max_len, dim] is a checkpoint buffer."""

    pe: torch.Tensor

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # [max_len, 1]
        frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # [dim/2]
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * frequency)
        pe[0, :, 1::2] = torch.cos(position * frequency)
        self.register_buffer("pe", pe)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """sequence [N, F, C] -> [N, F, C]."""
        length = sequence.shape[1]
        if length > self.pe.shape[1]:
            raise ValueError(f"{length} frames exceed the motion module's positional table of {self.pe.shape[1]}")
        return sequence + self.pe[:, :length].to(sequence.dtype)


class TemporalSelfAttention(Attention):
    """Self-attention across frames, separately at each spatial position, with positions added to q, k and v."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, positional_encoding_max_len: int | None) -> None:
        super().__init__(query_dim=dim, heads=num_heads, dim_head=head_dim)
        self.pos_encoder = (
            SinusoidalPositionalEncoding(dim, positional_encoding_max_len)
            if positional_encoding_max_len is not None
            else None
        )

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        """hidden_states [(B F), L, C] -> [(B F), L, C]."""
        batch_frames, length, channels = hidden_states.shape
        batch = batch_frames // num_frames
        sequences = hidden_states.reshape(batch, num_frames, length, channels).transpose(1, 2)  # [B, L, F, C]
        sequences = sequences.reshape(batch * length, num_frames, channels)  # [(B L), F, C]
        if self.pos_encoder is not None:
            sequences = self.pos_encoder(sequences)
        attended = super().forward(sequences)  # [(B L), F, C]
        attended = attended.reshape(batch, length, num_frames, channels).transpose(1, 2)  # [B, F, L, C]
        return attended.reshape(batch_frames, length, channels)


class TemporalTransformerBlock(nn.Module):
    def __init__(
        self, dim: int, num_heads: int, num_attention_blocks: int, positional_encoding_max_len: int | None
    ) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalSelfAttention(dim, num_heads, dim // num_heads, positional_encoding_max_len)
            for _ in range(num_attention_blocks)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_attention_blocks))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        """hidden_states [(B F), L, C] -> [(B F), L, C]."""
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            hidden_states = attention(norm(hidden_states), num_frames) + hidden_states
        fed_forward: torch.Tensor = self.ff(self.ff_norm(hidden_states))
        return fed_forward + hidden_states


class TemporalTransformer(nn.Module):
    def __init__(
        self,
        channels: int,
        num_heads: int,
        head_dim: int,
        num_transformer_blocks: int,
        num_attention_blocks: int,
        positional_encoding_max_len: int | None,
        norm_num_groups: int,
    ) -> None:
        super().__init__()
        inner_dim = num_heads * head_dim
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(inner_dim, num_heads, num_attention_blocks, positional_encoding_max_len)
            for _ in range(num_transformer_blocks)
        )
        self.proj_out = nn.Linear(inner_dim, channels)

    def forward(self, feature_map: torch.Tensor, num_frames: int) -> torch.Tensor:
        """feature_map [(B F), C, h, w] -> [(B F), C, h, w]."""
        batch_frames, channels, height, width = feature_map.shape
        normed = self.norm(feature_map).permute(0, 2, 3, 1)  # [(B F), h, w, C]
        tokens = self.proj_in(normed.reshape(batch_frames, height * width, channels))  # [(B F), h*w, inner]
        for block in self.transformer_blocks:
            tokens = block(tokens, num_frames)
        tokens = self.proj_out(tokens)  # [(B F), h*w, C]
        output: torch.Tensor = tokens.reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2) + feature_map
        return output


class MotionModule(nn.Module):
    """The official `VanillaTemporalModule`; the keyword arguments are the config's `motion_module_kwargs`."""

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_transformer_block: int = 2,
        attention_block_types: tuple[str, ...] | list[str] = ("Temporal_Self", "Temporal_Self"),
        temporal_position_encoding: bool = False,
        temporal_position_encoding_max_len: int = 24,
        temporal_attention_dim_div: int = 1,
        norm_num_groups: int = 32,
    ) -> None:
        super().__init__()
        unsupported = [kind for kind in attention_block_types if kind != "Temporal_Self"]
        if unsupported:
            raise ValueError(f"only 'Temporal_Self' motion-module attention is supported, got {unsupported}")
        self.temporal_transformer = TemporalTransformer(
            channels=in_channels,
            num_heads=num_attention_heads,
            head_dim=in_channels // num_attention_heads // temporal_attention_dim_div,
            num_transformer_blocks=num_transformer_block,
            num_attention_blocks=len(attention_block_types),
            positional_encoding_max_len=temporal_position_encoding_max_len if temporal_position_encoding else None,
            norm_num_groups=norm_num_groups,
        )

    def forward(self, feature_map: torch.Tensor, num_frames: int) -> torch.Tensor:
        """feature_map [(B F), C, h, w] with frames varying fastest -> [(B F), C, h, w]."""
        output: torch.Tensor = self.temporal_transformer(feature_map, num_frames)
        return output
