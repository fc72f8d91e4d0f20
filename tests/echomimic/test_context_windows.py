"""The uniform context-window schedule and the per-frame averaging of window predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from echomimic.context_windows import ContextWindowSchedule, WindowAverager


def test_step_zero_windows_match_the_official_queue(conformance_dir: Path) -> None:
    recorded = json.loads((conformance_dir / "tiny/e_pipeline.json").read_text())
    schedule = ContextWindowSchedule(num_frames=20, window_length=12, overlap=3)
    assert schedule.base_windows() == recorded["context_queue_step0"]


def test_every_step_shifts_windows_as_the_official_sampler(conformance_dir: Path) -> None:
    recorded = json.loads((conformance_dir / "tiny/e_pipeline.json").read_text())
    schedule = ContextWindowSchedule(num_frames=20, window_length=12, overlap=3)
    for step in recorded["per_step_windows"]:
        assert schedule.windows_at(step["step"]) == step["windows"], f"step {step['step']}"


def test_a_clip_that_fits_one_window_is_one_window() -> None:
    schedule = ContextWindowSchedule(num_frames=9, window_length=12, overlap=3)
    assert schedule.base_windows() == [list(range(9))]
    assert schedule.windows_at(1) == [[2, 3, 4, 5, 6, 7, 8, 0, 1]]


def test_no_shift_keeps_windows_in_place() -> None:
    schedule = ContextWindowSchedule(num_frames=15, window_length=15, overlap=0, shift_per_step=0)
    assert schedule.windows_at(5) == [list(range(15))]


def test_overlap_must_leave_a_stride() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ContextWindowSchedule(num_frames=20, window_length=12, overlap=12)


def test_averager_divides_each_frame_by_its_window_count() -> None:
    averager = WindowAverager((1, 1, 4, 1, 1), torch.device("cpu"), torch.float32)
    averager.add([0, 1, 2], torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1, 1))
    averager.add([2, 3, 0], torch.tensor([5.0, 7.0, 9.0]).view(1, 1, 3, 1, 1))
    assert averager.average().flatten().tolist() == [5.0, 2.0, 4.0, 7.0]


def test_averaging_frame_local_predictions_over_the_official_windows_returns_them() -> None:
    per_frame = torch.randn(1, 4, 20, 2, 3, generator=torch.manual_seed(0))
    schedule = ContextWindowSchedule(num_frames=20, window_length=12, overlap=3)
    averager = WindowAverager(tuple(per_frame.shape), torch.device("cpu"), torch.float32)
    for window in schedule.windows_at(3):
        averager.add(window, per_frame[:, :, window])
    torch.testing.assert_close(averager.average(), per_frame)


def test_averager_rejects_uncovered_frames() -> None:
    averager = WindowAverager((1, 1, 3, 1, 1), torch.device("cpu"), torch.float32)
    averager.add([0, 1], torch.ones(1, 1, 2, 1, 1))
    with pytest.raises(ValueError, match=r"frames \[2\]"):
        averager.average()
