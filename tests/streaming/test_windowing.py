from __future__ import annotations

import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE, IdlePose
from streaming.idle import IdleMotion
from streaming.renderer import WindowSpec
from streaming.windowing import AudioTimeline, WindowCutter, frame_start_sample, frames_starting_before

FPS = 24.0
SPEC = WindowSpec(frames=4, context=2, lookahead=0.04)  # look-ahead: 640 samples


def ramp(count: int, start: int = 0) -> np.ndarray:
    """Sample i of the timeline holds (i + 1) / 1e6: every sample says where it came from, and none is 0."""
    return ((np.arange(start, start + count) + 1) / 1e6).astype(np.float32)


def cutter(spec: WindowSpec = SPEC) -> WindowCutter:
    motion = IdleMotion(seed=3)
    return WindowCutter(spec, FPS, lambda index: motion.pose(index, FPS))


def test_frame_boundaries_are_rounded_per_frame_and_never_accumulate() -> None:
    # 16000 / 24 = 666.67 samples per frame.
    assert [frame_start_sample(k, FPS) for k in range(5)] == [0, 667, 1333, 2000, 2667]
    assert frame_start_sample(24 * 3600, FPS) == 3600 * SAMPLE_RATE
    assert frame_start_sample(-2, FPS) == -1333
    assert frames_starting_before(0, FPS) == 0
    assert frames_starting_before(1, FPS) == 1
    assert frames_starting_before(667, FPS) == 1
    assert frames_starting_before(668, FPS) == 2
    assert frames_starting_before(SAMPLE_RATE, FPS) == 24


def test_a_window_needs_its_frames_and_lookahead_before_it_is_ready() -> None:
    windows = cutter()
    needed = frame_start_sample(4, FPS) + 640
    windows.append(ramp(needed - 1))
    assert windows.ready_windows() == []
    windows.append(ramp(1, start=needed - 1))
    [window] = windows.ready_windows()
    assert (window.first_frame, window.frame_count, window.context_frames) == (0, 4, 2)
    assert windows.next_frame == 4


def test_window_audio_spans_context_frames_and_lookahead_exactly() -> None:
    windows = cutter()
    windows.append(ramp(SAMPLE_RATE))
    first, second = windows.ready_windows()[:2]

    # The first window reaches 2 frames before t=0: that context is silence.
    start = frame_start_sample(-2, FPS)
    assert first.start_time == start / SAMPLE_RATE
    assert len(first.samples) == frame_start_sample(4, FPS) + 640 - start
    assert not first.samples[:-start].any()
    np.testing.assert_array_equal(first.samples[-start:], ramp(frame_start_sample(4, FPS) + 640))

    # The second starts 2 frames of context before frame 4, and the frame times line up with the samples.
    assert second.first_frame == 4
    assert second.start_time == frame_start_sample(2, FPS) / SAMPLE_RATE
    offset = second.sample_offset(second.frame_time(4))
    assert second.samples[offset] == ramp(1, start=frame_start_sample(4, FPS))[0]
    assert len(second.samples) == frame_start_sample(8, FPS) + 640 - frame_start_sample(2, FPS)


def test_windows_carry_the_idle_pose_of_each_of_their_frames() -> None:
    windows = cutter()
    windows.append(ramp(SAMPLE_RATE))
    motion = IdleMotion(seed=3)
    for window in windows.ready_windows():
        expected = tuple(motion.pose(index, FPS) for index in range(window.first_frame, window.first_frame + 4))
        assert window.poses == expected


def test_flush_cuts_the_last_partial_window_with_silent_lookahead() -> None:
    windows = cutter()
    windows.append(ramp(SAMPLE_RATE + 160))  # 1.01 s: frame 24 starts at 16000 and touches the last samples
    ready = windows.ready_windows()
    rest = windows.flush()
    cut = ready + rest
    assert [window.first_frame for window in cut] == [0, 4, 8, 12, 16, 20, 24]
    last = cut[-1]
    assert last.frame_count == 1
    audio_end, start = SAMPLE_RATE + 160, frame_start_sample(22, FPS)
    np.testing.assert_array_equal(last.samples[: audio_end - start], ramp(audio_end - start, start=start))
    assert not last.samples[audio_end - start :].any()
    assert len(last.samples) == frame_start_sample(25, FPS) + 640 - start
    assert windows.flush() == []


def test_every_frame_is_cut_exactly_once_whatever_the_chunking() -> None:
    rng = np.random.default_rng(0)
    windows = cutter()
    total = 0
    cut = []
    while total < 3 * SAMPLE_RATE:
        size = int(rng.integers(1, 900))
        windows.append(ramp(size, start=total))
        total += size
        cut += windows.ready_windows()
    cut += windows.flush()
    frames = [index for window in cut for index in range(window.first_frame, window.first_frame + window.frame_count)]
    assert frames == list(range(frames_starting_before(total, FPS)))


def test_memory_stays_bounded_over_a_long_stream() -> None:
    windows = cutter()
    for second in range(120):
        windows.append(ramp(SAMPLE_RATE, start=second * SAMPLE_RATE))
        windows.ready_windows()
    held = windows.timeline.end - windows.timeline.start
    assert held <= frame_start_sample(SPEC.frames + SPEC.context, FPS) + 640 + SAMPLE_RATE // FPS


def test_reading_audio_that_was_discarded_is_an_error() -> None:
    timeline = AudioTimeline()
    timeline.append(ramp(1000))
    timeline.discard_before(500)
    np.testing.assert_array_equal(timeline.read(500, 600), ramp(100, start=500))
    with pytest.raises(ValueError, match="discarded"):
        timeline.read(400, 600)


def test_after_a_restart_the_context_before_it_is_silence() -> None:
    windows = cutter()
    windows.append(ramp(SAMPLE_RATE))
    windows.ready_windows()
    windows.restart(100)
    windows.append(ramp(SAMPLE_RATE, start=frame_start_sample(100, FPS)))
    window = windows.ready_windows()[0]
    assert window.first_frame == 100
    context = window.sample_offset(window.frame_time(100))
    assert not window.samples[:context].any()
    assert window.samples[context] == ramp(1, start=frame_start_sample(100, FPS))[0]


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="frames >= 1"):
        WindowCutter(WindowSpec(frames=0, context=0, lookahead=0.0), FPS, lambda index: IdlePose())
    with pytest.raises(ValueError, match="fps"):
        WindowCutter(SPEC, 0.0, lambda index: IdlePose())
