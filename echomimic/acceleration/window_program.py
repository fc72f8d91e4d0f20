"""The denoising UNet as a program over one window shape: flat tensor inputs, what compilers and exporters take.

`EchoUNet3DConditionModel.forward` takes its reference banks as a `ReferenceBanks` value, a timestep that may be a
Python number, and a CFG flag. `WindowProgram` fixes those to tensors: the timestep one per batch item, the banks
as their reader blocks' key and value projections (what the live renderer prepares once per portrait with
`project_banks`), two tensors per block in the UNet's bank order, and no CFG (both profiles sample with guidance 1.0).
That is the module `torch.export` exports (Torch-TensorRT's front door) and `torch.compile` compiles;
`AcceleratedUNet` (`echomimic.acceleration.backends`) turns the UNet's own call into this one.

A window shape is (batch, frames, latent height, latent width): batch is the number of sessions whose windows run
together, frames is context + new.

A profile that reuses deep features (`GenerationProfile.deep_feature_interval`) runs two more passes of the UNet:
one that also returns its deep features, and one that takes them as its last input and runs only the outermost
level. Each pass is a program of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from echomimic.acceleration.profiles import GenerationProfile
from echomimic.models.reference_banks import ProjectedBank, ReferenceBanks
from echomimic.models.timesteps import timesteps_for_batch
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel

AUDIO_TOKENS_PER_FRAME = 50
"""Whisper tokens per frame (10 rows of 5 stacked states), as `echomimic.audio_features` cuts them."""

WindowInputs = tuple[torch.Tensor, ...]
"""(sample, timesteps, audio_features, face_features, then key and value of each bank in bank order, then, for the
pass reusing deep features, the deep features)."""


class UNetPass(StrEnum):
    """Which of the UNet's calls a program runs."""

    FULL = "full"
    KEEPING_DEEP_FEATURES = "keeping-deep-features"
    """The whole UNet, returning (output, deep features)."""
    REUSING_DEEP_FEATURES = "reusing-deep-features"
    """The outermost level only, with the deep features as the last input."""

    @classmethod
    def for_interval(cls, deep_feature_interval: int) -> list[UNetPass]:
        """The passes a sampler with this deep-feature interval calls."""
        return [cls.FULL] if deep_feature_interval == 1 else list(cls)


@dataclass(frozen=True, slots=True, order=True)
class WindowShape:
    batch: int
    frames: int
    latent_height: int
    latent_width: int

    @classmethod
    def of_sample(cls, sample: torch.Tensor) -> WindowShape:
        """The shape of a [B, 4, F, h, w] sample."""
        batch, _, frames, height, width = sample.shape
        return cls(int(batch), int(frames), int(height), int(width))

    @classmethod
    def of_profile(cls, profile: GenerationProfile, batch: int = 1) -> WindowShape:
        return cls(batch, profile.frames_per_window, profile.latent_size, profile.latent_size)

    def __str__(self) -> str:
        return f"batch {self.batch}, {self.frames} frames, latent {self.latent_height}x{self.latent_width}"


class WindowProgram(nn.Module):
    """One pass of the denoising UNet with flat tensor inputs (see `WindowInputs`); output [B, 4, F, h, w], and the
    deep features too for `UNetPass.KEEPING_DEEP_FEATURES`."""

    def __init__(self, unet: EchoUNet3DConditionModel, unet_pass: UNetPass = UNetPass.FULL) -> None:
        super().__init__()
        self.unet = unet
        self.unet_pass = unet_pass
        self.bank_order = list(unet.bank_order)

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        audio_features: torch.Tensor,
        face_features: torch.Tensor,
        *rest: torch.Tensor,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        reusing = self.unet_pass == UNetPass.REUSING_DEEP_FEATURES
        bank_projections = rest[:-1] if reusing else rest
        keys, values = bank_projections[0::2], bank_projections[1::2]
        projected = {
            name: ProjectedBank(key, value) for name, key, value in zip(self.bank_order, keys, values, strict=True)
        }
        # With projections present the readers never compute with the raw banks; the UNet only looks their names up.
        reference_banks = ReferenceBanks(dict(zip(self.bank_order, keys, strict=True)), projected)
        if self.unet_pass == UNetPass.KEEPING_DEEP_FEATURES:
            kept: tuple[torch.Tensor, torch.Tensor] = self.unet.forward_keeping_deep_features(
                sample, timesteps, audio_features, face_features, reference_banks
            )
            return kept
        deep_features = rest[-1] if reusing else None
        output: torch.Tensor = self.unet(
            sample, timesteps, audio_features, face_features, reference_banks, deep_features=deep_features
        )
        return output


def flatten_window_inputs(
    unet: EchoUNet3DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor | float,
    audio_features: torch.Tensor,
    face_features: torch.Tensor,
    reference_banks: ReferenceBanks,
) -> WindowInputs:
    """The UNet's call arguments as `WindowProgram` inputs. Banks without projections are projected here (the live
    renderer projects them once per portrait instead); face features and banks of one portrait are broadcast to the
    batch, and the timestep becomes one long per batch item."""
    batch = sample.shape[0]
    timesteps = timesteps_for_batch(timestep, batch, sample.device).to(torch.long)
    face = _per_item(face_features, batch)
    if not reference_banks.projected:
        reference_banks = unet.project_banks(reference_banks)
    projections: list[torch.Tensor] = []
    for name in unet.bank_order:
        bank = reference_banks.projected[name]
        projections += [_per_item(bank.key, batch), _per_item(bank.value, batch)]
    return (sample, timesteps, audio_features, face, *projections)


def example_window_inputs(
    unet: EchoUNet3DConditionModel,
    reference_unet: ReferenceUNet2DConditionModel,
    shape: WindowShape,
    unet_pass: UNetPass = UNetPass.FULL,
) -> WindowInputs:
    """Inputs of `shape` for `unet_pass` on the UNet's device and dtype, banks from the reference UNet (their values
    do not matter to a compiler, their shapes do)."""
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype
    channels = unet.config["in_channels"]
    latent_hw = (shape.latent_height, shape.latent_width)
    with torch.no_grad():
        banks = reference_unet(torch.zeros(1, channels, *latent_hw, device=device, dtype=dtype), 0)
    sample = torch.randn(shape.batch, channels, shape.frames, *latent_hw, device=device, dtype=dtype)
    audio_width = unet.config["cross_attention_dim"]
    audio = torch.randn(shape.batch, shape.frames, AUDIO_TOKENS_PER_FRAME, audio_width, device=device, dtype=dtype)
    face = torch.randn(1, unet.config["block_out_channels"][0], 1, *latent_hw, device=device, dtype=dtype)
    timestep = torch.tensor(999, device=device)
    inputs = flatten_window_inputs(unet, sample, timestep, audio, face, banks)
    if unet_pass != UNetPass.REUSING_DEEP_FEATURES:
        return inputs
    deep_rows = shape.batch * shape.frames
    deep_features = torch.randn(deep_rows, unet.deep_feature_channels, *latent_hw, device=device, dtype=dtype)
    return (*inputs, deep_features)


def export_window_program(
    unet: EchoUNet3DConditionModel, inputs: WindowInputs, unet_pass: UNetPass = UNetPass.FULL
) -> torch.export.ExportedProgram:
    """`unet_pass` of the UNet exported by `torch.export` for exactly the shapes of `inputs`."""
    with torch.no_grad():
        return torch.export.export(WindowProgram(unet, unet_pass).eval(), inputs)


def _per_item(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """[1, ...] or [B, ...] as a contiguous [B, ...] (compiled programs take dense inputs)."""
    return tensor.expand(batch, *tensor.shape[1:]).contiguous() if tensor.shape[0] != batch else tensor
