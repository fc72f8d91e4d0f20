"""The whisper-tiny audio encoder as EchoMimic uses it: the hidden states of every layer, stacked, for each token.

Whisper turns a 30 s log-mel window [80, 3000] into 1500 tokens (two convs, the second with stride 2, then a
sinusoidal position table), and refines them with pre-LayerNorm residual attention blocks. EchoMimic conditions on
five states per token: the embedded input and the output of each of the 4 blocks. Whisper's final LayerNorm
(`ln_post`) is part of the checkpoint but EchoMimic never applies it.

State-dict keys are those of the official `whisper_tiny.pt` `encoder.*` entries without the `encoder.` prefix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from echomimic.models.checkpoint_loading import CheckpointMismatchError, load_strict

ENCODER_NAME = "encoder"
"""The encoder's module name in the whisper checkpoint: its keys start with `encoder.`."""
ENCODER_DIMS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")


def sinusoid_table(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's position table [length, channels]: sines in the first half of the channels, cosines in the second."""
    half = channels // 2
    inverse_timescales = torch.exp(-math.log(max_timescale) / (half - 1) * torch.arange(half))  # [half]
    angles = torch.arange(length)[:, None] * inverse_timescales[None, :]  # [length, half]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the module dtype, as whisper does, then cast back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        normalised: torch.Tensor = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return normalised.to(x.dtype)


class WhisperSelfAttention(nn.Module):
    """Multi-head self-attention with whisper's projections: the key projection has no bias."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = (
            projection(x).view(batch, tokens, self.heads, width // self.heads).transpose(1, 2)  # [b, heads, n, d]
            for projection in (self.query, self.key, self.value)
        )
        attended = F.scaled_dot_product_attention(q, k, v)  # [b, heads, n, d]
        merged: torch.Tensor = self.out(attended.transpose(1, 2).reshape(batch, tokens, width))
        return merged


class WhisperResidualBlock(nn.Module):
    """Pre-LayerNorm transformer block: self-attention, then a 4x GELU MLP, each added as a residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = WhisperSelfAttention(width, heads)
        self.attn_ln = Float32LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_ln = Float32LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        x = x + self.mlp(self.mlp_ln(x))
        return x


class WhisperAudioEncoder(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Log-mel [B, n_mels, 2·n_audio_ctx] → stacked hidden states [B, n_audio_ctx, n_audio_layer + 1, n_audio_state].

    Defaults are whisper-tiny: [B, 80, 3000] → [B, 1500, 5, 384].
    """

    @register_to_config  # type: ignore[untyped-decorator]
    def __init__(
        self,
        n_mels: int = 80,
        n_audio_ctx: int = 1500,
        n_audio_state: int = 384,
        n_audio_head: int = 6,
        n_audio_layer: int = 4,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.conv1 = nn.Conv1d(n_mels, n_audio_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_audio_state, n_audio_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoid_table(n_audio_ctx, n_audio_state))
        self.blocks = nn.ModuleList(WhisperResidualBlock(n_audio_state, n_audio_head) for _ in range(n_audio_layer))
        # Kept so the official checkpoint loads strictly; EchoMimic's features are taken before it.
        self.ln_post = Float32LayerNorm(n_audio_state)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, 2·n] → [B, n, layers + 1, state] for any n up to `n_audio_ctx`. The official encoder only
        ever sees n = n_audio_ctx (30 s, zero-padded); a shorter input, as the live renderer's rolling features
        give, takes the first n rows of the position table."""
        n_mels, longest = self.config["n_mels"], 2 * self.config["n_audio_ctx"]
        if mel.ndim != 3 or mel.shape[1] != n_mels or not 0 < mel.shape[2] <= longest or mel.shape[2] % 2:
            raise ValueError(
                f"log-mel input must be [batch, {n_mels}, frames] with an even number of frames up to {longest}; "
                f"got {tuple(mel.shape)}"
            )
        x = mel.to(self.conv1.weight.dtype)
        x = F.gelu(self.conv1(x))  # [b, state, 2·n]
        x = F.gelu(self.conv2(x))  # [b, state, n]
        x = x.transpose(1, 2) + self.positional_embedding[: x.shape[2]]  # [b, n, state]
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return torch.stack(states, dim=2)  # [b, ctx, layers + 1, state]


class WhisperCheckpointError(ValueError):
    """The whisper checkpoint cannot be read or does not match the encoder it describes."""


def load_whisper_tiny_encoder(source: str | os.PathLike[str] | Mapping[str, Any]) -> WhisperAudioEncoder:
    """Build the encoder from an official whisper checkpoint (`audio_processor/whisper_tiny.pt`) on the CPU, float32.

    `source` is the file's path or its already-loaded content: a dict holding `dims` and `model_state_dict`.
    Every `encoder.*` key must be present with the right shape and no other `encoder.*` key may exist (errors name
    the file, the keys and their shapes); the decoder's keys are ignored.
    """
    if isinstance(source, Mapping):
        label, checkpoint = "whisper checkpoint", source
    else:
        label, checkpoint = str(source), _read_checkpoint(Path(source))
    dims, state = checkpoint.get("dims"), checkpoint.get("model_state_dict")
    if not isinstance(dims, Mapping) or not isinstance(state, Mapping):
        raise WhisperCheckpointError(f"{label}: expected a dict with 'dims' and 'model_state_dict'")
    missing_dims = [name for name in ENCODER_DIMS if name not in dims]
    if missing_dims:
        raise WhisperCheckpointError(f"{label}: 'dims' lacks {', '.join(missing_dims)}")

    encoder: WhisperAudioEncoder = WhisperAudioEncoder(**{name: int(dims[name]) for name in ENCODER_DIMS})
    # Checked and loaded under a parent named like the file's prefix, so keys in errors read as in the file.
    whisper = nn.Module()
    whisper.add_module(ENCODER_NAME, encoder)
    encoder_state = {key: value for key, value in state.items() if key.startswith(f"{ENCODER_NAME}.")}
    try:
        load_strict(whisper, encoder_state, label)
    except CheckpointMismatchError as error:
        raise WhisperCheckpointError(str(error)) from error
    encoder.eval()
    return encoder


def _read_checkpoint(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise WhisperCheckpointError(f"{path}: whisper checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many unrelated types for a corrupt or foreign file
        raise WhisperCheckpointError(f"{path}: not a readable whisper checkpoint ({error})") from error
    if not isinstance(checkpoint, Mapping):
        raise WhisperCheckpointError(f"{path}: expected a dict with 'dims' and 'model_state_dict'")
    return checkpoint
