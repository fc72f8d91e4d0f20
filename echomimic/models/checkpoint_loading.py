"""Loading the official checkpoints with the official semantics, and clear errors when a file does not fit.

* Reference UNet, face locator: a strict load (every key present, no extra keys, equal shapes).
* Denoising UNet, in the official `from_pretrained_2d` + `load_state_dict(strict=False)` order:
  1. the SD 1.5 base UNet state with the motion-module state merged over it; a model key takes a value from this
     merge only when name and shape both match (so the 768-wide base `attn2.to_k/to_v` stay out);
  2. the denoising file overwrites every model key it holds; its keys that match nothing are ignored, but a key
     whose shape differs from the model's is an error (as in torch's non-strict load).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model; the message names the file, the key and the shapes."""


@dataclass(frozen=True)
class DenoisingLoadReport:
    """Where each model key of the denoising UNet took its value from (key lists in model order)."""

    from_base_or_motion_module: list[str]
    from_denoising_file: list[str]
    ignored_denoising_keys: list[str]
    not_loaded: list[str]


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], file_label: str) -> None:
    """Loads `state` into `model`, which must hold exactly the same keys and shapes."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    problems = [f"missing key {key!r} (expected shape {_shape(expected[key])})" for key in missing]
    problems += [f"unexpected key {key!r} (shape {_shape(state[key])})" for key in unexpected]
    problems += _shape_mismatches(expected, state)
    if problems:
        raise CheckpointMismatchError(_describe(file_label, problems))
    model.load_state_dict(dict(state), strict=True)


def load_denoising_unet_state(
    model: nn.Module,
    base_unet_state: Mapping[str, torch.Tensor],
    motion_module_state: Mapping[str, torch.Tensor],
    denoising_state: Mapping[str, torch.Tensor],
    denoising_file_label: str = "denoising_unet.pth",
) -> DenoisingLoadReport:
    """Merges the three official sources into `model` in the official order (see the module docstring)."""
    expected = model.state_dict()
    mismatches = _shape_mismatches(expected, denoising_state)
    if mismatches:
        raise CheckpointMismatchError(_describe(denoising_file_label, mismatches))

    merged = {**base_unet_state, **motion_module_state}
    from_merge = [key for key in expected if key in merged and merged[key].shape == expected[key].shape]
    from_denoising = [key for key in expected if key in denoising_state]
    state = {key: merged[key] for key in from_merge} | {key: denoising_state[key] for key in from_denoising}
    model.load_state_dict(state, strict=False)
    return DenoisingLoadReport(
        from_base_or_motion_module=[key for key in from_merge if key not in denoising_state],
        from_denoising_file=from_denoising,
        ignored_denoising_keys=[key for key in denoising_state if key not in expected],
        not_loaded=[key for key in expected if key not in state],
    )


def _shape_mismatches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    return [
        f"key {key!r} has shape {_shape(value)} in the file but {_shape(expected[key])} in the model"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def _describe(file_label: str, problems: list[str], shown: int = 10) -> str:
    listed = "; ".join(problems[:shown])
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{file_label} does not fit the model: {len(problems)} problem(s): {listed}{more}"
