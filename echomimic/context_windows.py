"""Context windows: how a clip longer than the motion module's span is denoised in overlapping pieces.

The denoising UNet attends across at most `window_length` frames at a time. A clip of `num_frames` frames is cut into
windows of that length that overlap by `overlap` frames and wrap around the clip's end (the official "uniform"
schedule, closed loop, as `get_context_scheduler("uniform")(0, steps, L, window, 1, overlap)` yields it: the
pipeline always calls it at step 0 with stride 1, so only that case exists here). For L=20, window 12, overlap 3 the
windows start at 0, 9 and 18.

At denoising step k every frame index is shifted by `shift_per_step · k` (mod L), so the seams between windows move
from step to step instead of staying on the same frames. Each window's prediction is added into its frames and every
frame's sum is divided by the number of windows that covered it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OFFICIAL_SHIFT_PER_STEP = 2
"""`pipeline_echo_mimic_acc.py` moves every window by 2 frames per denoising step."""


@dataclass(frozen=True, slots=True)
class ContextWindowSchedule:
    """The frame indices each UNet call sees, per denoising step."""

    num_frames: int
    window_length: int
    overlap: int
    shift_per_step: int = OFFICIAL_SHIFT_PER_STEP

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.window_length < 1:
            raise ValueError(f"need at least one frame and a window of at least one frame, got {self}")
        if not 0 <= self.overlap < self.window_length:
            raise ValueError(f"overlap must be in [0, window_length), got {self.overlap} for {self.window_length}")

    def base_windows(self) -> list[list[int]]:
        """The windows of step 0: one window over the whole clip when it fits, else overlapping wrapped windows."""
        if self.num_frames <= self.window_length:
            return [list(range(self.num_frames))]
        stride = self.window_length - self.overlap
        return [
            [index % self.num_frames for index in range(start, start + self.window_length)]
            for start in range(0, self.num_frames, stride)
        ]

    def windows_at(self, step_index: int) -> list[list[int]]:
        """The windows of denoising step `step_index`: the base windows shifted by `shift_per_step · step_index`."""
        shift = self.shift_per_step * step_index
        return [[(index + shift) % self.num_frames for index in window] for window in self.base_windows()]


class WindowAverager:
    """Sums per-window predictions into their frames, then averages by how many windows covered each frame.

    Predictions are [B, C, f, h, w] for a window of f frames; the total is [B, C, F, h, w].
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> None:
        frames = shape[2]
        self._total = torch.zeros(shape, device=device, dtype=dtype)  # [B, C, F, h, w]
        self._count = torch.zeros((1, 1, frames, 1, 1), device=device, dtype=dtype)  # [1, 1, F, 1, 1]

    def add(self, window: list[int], prediction: torch.Tensor) -> None:
        self._total[:, :, window] = self._total[:, :, window] + prediction
        self._count[:, :, window] = self._count[:, :, window] + 1

    def average(self) -> torch.Tensor:
        if bool((self._count == 0).any()):
            uncovered = torch.nonzero(self._count.flatten() == 0).flatten().tolist()
            raise ValueError(f"frames {uncovered} were not covered by any context window")
        return self._total / self._count
