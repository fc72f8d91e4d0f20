from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE, AudioChunk
from streaming.resampler import AudioResampler


def webrtc_frames(
    signal: np.ndarray, rate: int = 48_000, layout: str = "stereo", frame_samples: int = 960, first_pts: int = 0
) -> list[av.AudioFrame]:
    """Frames as aiortc hands them over after Opus: packed s16, 20 ms, pts counted in samples at `rate`."""
    channels = 2 if layout == "stereo" else 1
    pcm = np.round(np.clip(signal, -1, 1) * 32767).astype(np.int16)
    frames = []
    for index, offset in enumerate(range(0, len(pcm), frame_samples)):
        block = pcm[offset : offset + frame_samples]
        interleaved = np.repeat(block, channels) if channels == 2 else block
        frame = av.AudioFrame.from_ndarray(interleaved.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = first_pts + index * frame_samples
        frame.time_base = Fraction(1, rate)
        frames.append(frame)
    return frames


def sine(frequency: float, duration: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(round(duration * rate)) / rate)


def run(resampler: AudioResampler, frames: list[av.AudioFrame]) -> list[AudioChunk]:
    out = [resampler.resample(frame) for frame in frames]
    out.append(resampler.flush())
    return [chunk for chunk in out if chunk is not None]


def joined(chunks: list[AudioChunk]) -> np.ndarray:
    return np.concatenate([chunk.samples for chunk in chunks])


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))


def test_webrtc_stereo_frames_become_16khz_mono_with_the_same_length_and_pitch() -> None:
    chunks = run(AudioResampler(), webrtc_frames(sine(440.0, 2.0, 48_000), layout="stereo"))
    samples = joined(chunks)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == 2 * SAMPLE_RATE
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=1.0)


def test_pts_count_samples_on_one_continuous_timeline() -> None:
    chunks = run(AudioResampler(), webrtc_frames(sine(300.0, 1.0, 48_000)))
    assert chunks[0].pts == 0.0
    for before, after in itertools.pairwise(chunks):
        assert after.pts == pytest.approx(before.pts + before.duration, abs=1e-12)


def test_stereo_is_averaged_not_summed() -> None:
    # libswresample's own downmix would give 0.5 * 2 * 0.707 = 0.71 for a centred voice.
    samples = joined(run(AudioResampler(), webrtc_frames(sine(440.0, 1.0, 48_000, amplitude=0.5))))
    steady = samples[1000:-1000]
    assert np.max(np.abs(steady)) == pytest.approx(0.5, abs=0.01)


def test_a_change_of_layout_and_rate_midstream_loses_no_time() -> None:
    resampler = AudioResampler()
    first = webrtc_frames(sine(440.0, 0.5, 48_000), rate=48_000, layout="stereo")
    second = webrtc_frames(sine(440.0, 0.5, 44_100), rate=44_100, layout="mono", frame_samples=441)
    chunks = run(resampler, first + second)
    assert len(joined(chunks)) == SAMPLE_RATE
    for before, after in itertools.pairwise(chunks):
        assert after.pts == pytest.approx(before.pts + before.duration, abs=1e-12)


def test_a_real_gap_in_input_timestamps_moves_the_timeline_on_without_inventing_samples() -> None:
    resampler = AudioResampler(gap_tolerance=0.1)
    before = webrtc_frames(sine(440.0, 0.4, 48_000))
    after = webrtc_frames(sine(440.0, 0.4, 48_000), first_pts=48_000)  # resumes at 1.0 s: 0.6 s were lost
    chunks = [chunk for chunk in (resampler.resample(frame) for frame in before + after) if chunk is not None]
    resumed = next(chunk for chunk in chunks if chunk.pts >= 0.5)
    produced_before = sum(len(chunk.samples) for chunk in chunks if chunk.pts < 0.5)
    assert resumed.pts == pytest.approx(produced_before / SAMPLE_RATE + 0.6, abs=1 / SAMPLE_RATE)
    assert resampler.gaps_skipped == pytest.approx(0.6)
    assert len(joined(chunks)) < SAMPLE_RATE  # only the 0.8 s that were sent


@pytest.mark.parametrize(
    ("jump", "reason"),
    [(0.01, "jitter below the tolerance"), (-0.5, "a jump back"), (30.0, "beyond max_gap: a sender clock reset")],
)
def test_untrustworthy_timestamp_jumps_are_ignored(jump: float, reason: str) -> None:
    resampler = AudioResampler(gap_tolerance=0.1, max_gap=10.0)
    before = webrtc_frames(sine(440.0, 0.4, 48_000))
    after = webrtc_frames(sine(440.0, 0.4, 48_000), first_pts=round((0.4 + jump) * 48_000))
    chunks = run(resampler, before + after)
    assert resampler.gaps_skipped == 0.0, reason
    for earlier, later in itertools.pairwise(chunks):
        assert later.pts == pytest.approx(earlier.pts + earlier.duration, abs=1e-12), reason


def test_frames_without_timestamps_are_counted() -> None:
    frames = webrtc_frames(sine(440.0, 0.5, 48_000))
    for frame in frames:
        frame.pts = None
    chunks = run(AudioResampler(), frames)
    assert len(joined(chunks)) == SAMPLE_RATE // 2
    assert chunks[-1].pts == pytest.approx((SAMPLE_RATE // 2 - len(chunks[-1].samples)) / SAMPLE_RATE)


@pytest.mark.parametrize(
    ("layout_name", "make"),
    [
        ("int16 interleaved stereo", lambda x: np.repeat(np.round(x * 32767).astype(np.int16), 2)),
        ("int16 packed (1, n * 2)", lambda x: np.repeat(np.round(x * 32767).astype(np.int16), 2).reshape(1, -1)),
        ("float32 planar (2, n)", lambda x: np.stack([x, x]).astype(np.float32)),
        ("float64 interleaved", lambda x: np.repeat(x, 2)),
    ],
)
def test_raw_pcm_in_any_shape_and_type(layout_name: str, make: Callable[[np.ndarray], np.ndarray]) -> None:
    signal = sine(440.0, 1.0, 44_100)
    resampler = AudioResampler()
    chunks = [resampler.resample_pcm(make(signal), 44_100, 2), resampler.flush()]
    samples = joined([chunk for chunk in chunks if chunk is not None])
    assert len(samples) == SAMPLE_RATE, layout_name
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=1.0), layout_name
    assert np.max(np.abs(samples[1000:-1000])) == pytest.approx(0.5, abs=0.01), layout_name


@pytest.mark.parametrize(
    ("samples", "rate", "channels", "message"),
    [
        (np.zeros(11, dtype=np.int16), 48_000, 2, "do not divide"),
        (np.zeros((3, 100), dtype=np.float32), 48_000, 2, "neither interleaved"),
        (np.zeros(100, dtype=np.int32), 48_000, 1, "int16 or float"),
        (np.zeros(100, dtype=np.int16), 0, 1, "sample_rate"),
        (np.zeros(100, dtype=np.int16), 48_000, 0, "channels"),
    ],
)
def test_bad_pcm_is_refused_with_a_clear_message(samples: np.ndarray, rate: int, channels: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioResampler().resample_pcm(samples, rate, channels)


def test_empty_input_produces_nothing() -> None:
    resampler = AudioResampler()
    assert resampler.resample_pcm(np.zeros(0, dtype=np.int16), 48_000, 1) is None
    assert resampler.flush() is None
