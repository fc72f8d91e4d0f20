"""Seam scores and the lip-sync offset, on frames whose seams and lag are known."""

from __future__ import annotations

import numpy as np
import pytest

from server.frame_metrics import DrawnFrame, FrameObserver
from streaming.frames import SAMPLE_RATE

FPS = 25.0
SIZE = 32


def flat(level: float) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), round(level), dtype=np.uint8)


def test_a_jump_where_windows_meet_scores_high_and_a_smooth_boundary_scores_one() -> None:
    smooth, jumpy = FrameObserver(None), FrameObserver(None)
    for index in range(24):
        window = index // 4
        smooth.observe(DrawnFrame(index, flat(100 + 2 * index), True, window))
        jumpy.observe(DrawnFrame(index, flat(100 + 2 * index + 20 * window), True, window))
    assert smooth.seams().window_boundaries == pytest.approx(1.0)
    assert jumpy.seams().window_boundaries == pytest.approx(11.0)
    assert smooth.seams().transitions is None


def test_speech_idle_transitions_are_scored_against_the_inside_of_windows() -> None:
    observer = FrameObserver(None)
    levels = [50, 50, 60, 64, 68, 72, 76, 80, 50, 50]  # idle, speech in two windows of 3, idle with a cut back
    speaking = [False, False, True, True, True, True, True, True, False, False]
    windows = [None, None, 0, 0, 0, 1, 1, 1, None, None]
    for index, (level, talking, window) in enumerate(zip(levels, speaking, windows, strict=True)):
        observer.observe(DrawnFrame(index, flat(level), talking, window))
    seams = observer.seams()
    assert seams.inside_window_change == pytest.approx(4.0)
    assert seams.transitions == pytest.approx((10 + 30) / 2 / 4)


def test_one_frame_windows_are_scored_against_every_speaking_step() -> None:
    observer = FrameObserver(None)
    for index in range(10):
        observer.observe(DrawnFrame(index, flat(3 * index), True, index))
    assert observer.seams().window_boundaries == pytest.approx(1.0)


@pytest.mark.parametrize("lag_frames", [-2, 0, 3])
def test_the_lip_sync_offset_is_the_lag_of_mouth_motion_behind_the_voice(lag_frames: int) -> None:
    rng = np.random.default_rng(5)
    frames = 200
    loudness = np.repeat(rng.uniform(0.0, 0.5, frames // 4), 4)  # syllable-like steps of 4 frames
    samples_per_frame = round(SAMPLE_RATE / FPS)
    audio = (np.repeat(loudness, samples_per_frame) * np.sin(np.arange(frames * samples_per_frame) * 0.3)).astype(
        np.float32
    )
    mouth = (0, 0, SIZE, SIZE)
    observer = FrameObserver(mouth)
    for index in range(frames):
        opening = loudness[min(frames - 1, max(0, index - lag_frames))]
        observer.observe(DrawnFrame(index, flat(255 * opening), True, index))
    offset = observer.lip_sync_offset(audio, FPS)
    assert offset is not None
    assert offset == pytest.approx(lag_frames / FPS, abs=0.25 / FPS)


def test_no_offset_without_a_mouth_or_without_motion() -> None:
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    blind, still = FrameObserver(None), FrameObserver((0, 0, SIZE, SIZE))
    for index in range(25):
        blind.observe(DrawnFrame(index, flat(index), True, index))
        still.observe(DrawnFrame(index, flat(7), True, index))
    assert blind.lip_sync_offset(audio, FPS) is None
    assert still.lip_sync_offset(audio, FPS) is None
