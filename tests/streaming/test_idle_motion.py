from __future__ import annotations

import numpy as np
import pytest

from streaming.frames import IdlePose
from streaming.idle import IdleMotion

FPS = 24.0
TEN_MINUTES = int(600 * FPS)


def poses(motion: IdleMotion, count: int) -> list[IdlePose]:
    return [motion.pose(index, FPS) for index in range(count)]


def blink_starts(track: list[IdlePose]) -> list[int]:
    """Frames where the eyes start closing."""
    closed = np.array([pose.blink > 0.0 for pose in track])
    return [int(index) for index in np.flatnonzero(closed[1:] & ~closed[:-1]) + 1]


def test_the_same_seed_gives_the_same_motion_whatever_order_frames_are_asked_in() -> None:
    sequential = poses(IdleMotion(seed=7), 2000)
    jumping = IdleMotion(seed=7)
    assert jumping.pose(1999, FPS) == sequential[1999]
    assert [jumping.pose(index, FPS) for index in range(2000)] == sequential
    assert poses(IdleMotion(seed=8), 2000) != sequential


def test_blinks_come_at_natural_intervals_and_last_a_fraction_of_a_second() -> None:
    track = poses(IdleMotion(seed=1), TEN_MINUTES)
    starts = blink_starts(track)
    intervals = np.diff(starts) / FPS
    assert 100 <= len(starts) <= 300  # one every 2 to 6 s over ten minutes
    assert intervals.min() >= 2.0 - 0.3
    assert intervals.max() <= 6.0 + 0.3
    assert intervals.std() > 0.5  # irregular, not a metronome
    for start in starts:
        closing = [pose.blink for pose in track[start : start + 8]]
        length = next(offset for offset, blink in enumerate(closing) if blink == 0.0)
        assert 2 <= length <= 7  # 150-250 ms at 24 fps, counting the frames with the lids moving
        assert max(closing) > 0.5  # the eyes really close, at least half way, on some frame


def test_a_blink_closes_and_opens_smoothly() -> None:
    motion = IdleMotion(seed=2)
    fine = 1000.0  # sample the curve finely to see its shape, not just its frames
    curve = np.array([motion.pose(index, fine).blink for index in range(int(20 * fine))])
    start = int(np.flatnonzero(curve > 0)[0])
    end = start + int(np.flatnonzero(curve[start:] == 0)[0])
    blink = curve[start:end]
    peak = int(np.argmax(blink))
    assert np.all(np.diff(blink[: peak + 1]) >= 0)
    assert np.all(np.diff(blink[peak:]) <= 0)
    assert blink.max() == pytest.approx(1.0)
    assert np.abs(np.diff(curve)).max() < 0.05  # no jumps: at 1 ms resolution no step exceeds 5 %


def test_head_motion_is_slight_smooth_and_never_frozen() -> None:
    track = poses(IdleMotion(seed=3), TEN_MINUTES)
    x = np.array([pose.head_offset[0] for pose in track])
    y = np.array([pose.head_offset[1] for pose in track])
    roll = np.array([pose.head_roll for pose in track])
    for series, amplitude, per_frame in ((x, 0.05, 0.002), (y, 0.05, 0.002), (roll, 3.0, 0.1)):
        assert np.abs(series).max() <= amplitude  # slight
        assert np.abs(np.diff(series)).max() <= per_frame  # smooth from frame to frame
        assert series.std() > amplitude / 20  # it does move
        # Never frozen: over every second the head goes somewhere.
        per_second = series[: len(series) // 24 * 24].reshape(-1, 24)
        assert (np.ptp(per_second, axis=1) > 1e-5).all()


def test_breathing_is_a_slow_cycle_of_about_a_quarter_hertz() -> None:
    breath = np.array([pose.breath for pose in poses(IdleMotion(seed=4), TEN_MINUTES)])
    assert breath.min() >= -1.0 and breath.max() <= 1.0
    spectrum = np.abs(np.fft.rfft(breath - breath.mean()))
    frequency = np.argmax(spectrum) * FPS / len(breath)
    assert frequency == pytest.approx(0.25, abs=0.01)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="blink_interval"):
        IdleMotion(blink_interval=(3.0, 2.0))
    with pytest.raises(ValueError, match="blink_duration"):
        IdleMotion(blink_duration=(0.2, 5.0))
