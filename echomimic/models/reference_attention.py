"""Reference attention: the writer blocks of the reference UNet and the reader blocks of the denoising UNet.

Writer (reference UNet, one portrait latent):
    n = norm1(h); bank = n; h = attn1(n) + h; h = ff(norm3(h)) + h            (no cross-attention)
Reader (denoising UNet, frames folded into the batch as (b f)):
    n = norm1(h); h = attn1(q=n, kv=[n, bank of this batch item]) + h
    h = audio_attention_scale * attn2(norm2(h), audio tokens of this frame) + h
    h = ff(norm3(h)) + h
Writer and reader blocks with the same module name form a pair. All attentions use `heads` heads of C/heads.
The bank's keys and values may come precomputed (`ProjectedBank`): attn1's key and value projections have no bias,
so projecting [n, bank] is projecting n and the bank apart, and the bank's half need only be done once per portrait.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from echomimic.models.reference_banks import Bank, ProjectedBank
from echomimic.models.spatial_transformer import SpatialTransformer


class ReferenceWriterBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=num_heads, dim_head=dim // num_heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    @property
    def width(self) -> int:
        return int(self.norm1.normalized_shape[0])

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden_states [N, L, C] -> (hidden_states [N, L, C], bank [N, L, C])."""
        bank = self.norm1(hidden_states)
        hidden_states = self.attn1(bank) + hidden_states
        hidden_states = self.ff(self.norm3(hidden_states)) + hidden_states
        return hidden_states, bank


class ReferenceReaderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, cross_attention_dim: int, audio_attention_scale: float) -> None:
        super().__init__()
        # Registration order follows the official checkpoint's key order.
        self.attn1 = Attention(query_dim=dim, heads=num_heads, dim_head=dim // num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(
            query_dim=dim, cross_attention_dim=cross_attention_dim, heads=num_heads, dim_head=dim // num_heads
        )
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)
        self.audio_attention_scale = audio_attention_scale

    @property
    def width(self) -> int:
        return int(self.norm1.normalized_shape[0])

    def project_bank(self, bank: torch.Tensor) -> ProjectedBank:
        """bank [B, Lr, C] through attn1's key and value projections."""
        return ProjectedBank(key=self.attn1.to_k(bank), value=self.attn1.to_v(bank))

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio_tokens: torch.Tensor,
        bank: Bank,
        num_frames: int,
        uncond_first_half: bool,
    ) -> torch.Tensor:
        """hidden_states [(B F), L, C], audio_tokens [(B F), T, D], bank [B, Lr, C] (or projected) -> [(B F), L, C].

        With `uncond_first_half`, the first B/2 batch items attend to themselves only (the official CFG reader).
        """
        normed = self.norm1(hidden_states)
        if uncond_first_half:
            half = normed.shape[0] // 2
            attended = torch.cat(
                [self.attn1(normed[:half]), self._attend_with_bank(normed[half:], _second_half(bank), num_frames)]
            )
        else:
            attended = self._attend_with_bank(normed, bank, num_frames)
        hidden_states = attended + hidden_states
        audio_attended = self.attn2(self.norm2(hidden_states), encoder_hidden_states=audio_tokens)
        hidden_states = self.audio_attention_scale * audio_attended + hidden_states
        fed_forward: torch.Tensor = self.ff(self.norm3(hidden_states))
        return fed_forward + hidden_states

    def _attend_with_bank(self, normed: torch.Tensor, bank: Bank, num_frames: int) -> torch.Tensor:
        """normed [(B F), L, C] attending over [itself, the bank of its batch item] -> [(B F), L, C]."""
        if isinstance(bank, torch.Tensor):
            bank_per_frame = bank.repeat_interleave(num_frames, dim=0)  # [(B F), Lr, C]
            context = torch.cat([normed, bank_per_frame.to(normed.dtype)], dim=1)  # [(B F), L + Lr, C]
            attended: torch.Tensor = self.attn1(normed, encoder_hidden_states=context)
            return attended
        attention = self.attn1
        batch, _, width = normed.shape
        heads = attention.heads

        def split_heads(tokens: torch.Tensor) -> torch.Tensor:  # [N, n, C] -> [N, heads, n, C/heads]
            return tokens.view(*tokens.shape[:-1], heads, width // heads).transpose(1, 2)

        bank_key = bank.key.to(normed.dtype).repeat_interleave(num_frames, dim=0)  # [(B F), Lr, C]
        bank_value = bank.value.to(normed.dtype).repeat_interleave(num_frames, dim=0)
        query = split_heads(attention.to_q(normed))
        key = split_heads(torch.cat([attention.to_k(normed), bank_key], dim=1))  # [(B F), heads, L + Lr, C/heads]
        value = split_heads(torch.cat([attention.to_v(normed), bank_value], dim=1))
        merged = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).reshape(batch, -1, width)
        projected: torch.Tensor = attention.to_out[1](attention.to_out[0](merged))
        return projected


def _second_half(bank: Bank) -> Bank:
    """The banks of the second half of the batch (the conditional half of a guidance batch)."""
    if isinstance(bank, torch.Tensor):
        return bank[bank.shape[0] // 2 :]
    half = bank.key.shape[0] // 2
    return ProjectedBank(bank.key[half:], bank.value[half:])


class ReferenceWriterTransformer(SpatialTransformer):
    def __init__(self, channels: int, num_heads: int, norm_num_groups: int) -> None:
        super().__init__(channels, norm_num_groups, ReferenceWriterBlock(channels, num_heads))

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feature_map [N, C, h, w] -> (feature_map [N, C, h, w], bank [N, h*w, C])."""
        tokens, bank = self.transformer_blocks[0](self.to_tokens(feature_map))
        return self.from_tokens(tokens, feature_map), bank


class ReferenceReaderTransformer(SpatialTransformer):
    def __init__(
        self,
        channels: int,
        num_heads: int,
        norm_num_groups: int,
        cross_attention_dim: int,
        audio_attention_scale: float,
    ) -> None:
        block = ReferenceReaderBlock(channels, num_heads, cross_attention_dim, audio_attention_scale)
        super().__init__(channels, norm_num_groups, block)

    def forward(
        self,
        feature_map: torch.Tensor,
        audio_tokens: torch.Tensor,
        bank: Bank,
        num_frames: int,
        uncond_first_half: bool,
    ) -> torch.Tensor:
        """feature_map [(B F), C, h, w], audio_tokens [(B F), T, D], bank [B, Lr, C] -> [(B F), C, h, w]."""
        tokens = self.transformer_blocks[0](
            self.to_tokens(feature_map), audio_tokens, bank, num_frames, uncond_first_half
        )
        return self.from_tokens(tokens, feature_map)
