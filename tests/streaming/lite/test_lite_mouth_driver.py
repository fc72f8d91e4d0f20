"""Audio to mouth shapes: loudness opens, spectrum shapes, silence closes, and nothing carries over a window."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose
from streaming.lite import MouthDriver, MouthShape
from tests.streaming.lite.clips import vowel

FPS = 25.0
FRAME = round(SAMPLE_RATE / FPS)


def one_frame_window(samples: np.ndarray, *, context_frames: int = 1, lookahead: float = 0.04) -> AudioWindow:
    """A window drawing frame 10, its samples starting `context_frames` earlier."""
    first = 10
    return AudioWindow(
        samples=samples.astype(np.float32),
        start_time=(first - context_frames) / FPS,
        fps=FPS,
        first_frame=first,
        frame_count=1,
        context_frames=context_frames,
        lookahead=lookahead,
        poses=(IdlePose(),),
    )


def test_silence_is_a_closed_mouth() -> None:
    window = one_frame_window(np.zeros(3 * FRAME))
    assert MouthDriver().shapes(window) == [MouthShape(opening=0.0, spread=0.0)]


def test_opening_grows_with_loudness() -> None:
    driver = MouthDriver()
    openings = [
        driver.shapes(one_frame_window(vowel(level, 3 * FRAME / SAMPLE_RATE)))[0].opening
        for level in (-60, -42, -34, -26, -18)
    ]
    assert openings[0] == 0.0
    assert all(later > earlier for earlier, later in pairwise(openings))
    assert openings[-1] > 0.8


def test_quiet_hiss_keeps_the_mouth_shut() -> None:
    hiss = np.random.default_rng(1).normal(0.0, 10 ** (-62 / 20), 3 * FRAME)
    assert MouthDriver().shapes(one_frame_window(hiss))[0].opening == 0.0


def test_spectrum_spreads_or_rounds_the_lips() -> None:
    driver = MouthDriver()
    seconds = 3 * FRAME / SAMPLE_RATE
    ee = driver.shapes(one_frame_window(vowel(-25, seconds, formants=(300.0, 2300.0, 3000.0))))[0]
    oo = driver.shapes(one_frame_window(vowel(-25, seconds, formants=(300.0, 800.0))))[0]
    assert ee.spread > 0.5
    assert oo.spread < -0.5


def test_each_frame_shows_its_own_audio() -> None:
    """Two frames drawn, only the second one's audio is loud: the first stays near closed."""
    samples = np.zeros(4 * FRAME, dtype=np.float32)
    samples[2 * FRAME :] = vowel(-20, 2 * FRAME / SAMPLE_RATE)
    window = AudioWindow(
        samples=samples,
        start_time=9 / FPS,
        fps=FPS,
        first_frame=10,
        frame_count=2,
        context_frames=1,
        lookahead=0.04,
        poses=(IdlePose(), IdlePose()),
    )
    first, second = MouthDriver(lead=0.0).shapes(window)
    assert first.opening < 0.05
    assert second.opening > 0.5


def test_the_mouth_closes_after_speech_stops_but_not_instantly() -> None:
    """Loud context, silent frame: the release carries some opening into the frame, then lets go."""
    driver = MouthDriver(lead=0.0)
    (speaking,) = driver.shapes(one_frame_window(vowel(-20, 3 * FRAME / SAMPLE_RATE)))
    samples = np.zeros(3 * FRAME, dtype=np.float32)
    samples[:FRAME] = vowel(-20, FRAME / SAMPLE_RATE)
    (released,) = driver.shapes(one_frame_window(samples))
    assert 0.1 < released.opening < 0.8 * speaking.opening


def test_no_state_carries_across_windows() -> None:
    """After an interrupted loud window, a silent window is closed: the driver remembers nothing."""
    driver = MouthDriver()
    loud = driver.shapes(one_frame_window(vowel(-20, 3 * FRAME / SAMPLE_RATE)))
    assert loud[0].opening > 0.5
    assert driver.shapes(one_frame_window(np.zeros(3 * FRAME))) == [MouthShape(opening=0.0, spread=0.0)]


def test_short_windows_at_the_stream_edges_still_give_one_shape_per_frame() -> None:
    """No context before the first frame, no look-ahead after the last one."""
    window = one_frame_window(np.full(FRAME, 0.1), context_frames=0, lookahead=0.0)
    shapes = MouthDriver().shapes(window)
    assert len(shapes) == 1
    assert shapes[0].opening > 0.0
