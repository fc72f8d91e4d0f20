"""Any incoming audio to the stream's format: 16 kHz mono float32 `AudioChunk`s on one continuous timeline.

WebRTC hands over Opus-decoded `av.AudioFrame`s (48 kHz, s16, mono or stereo); other producers (a file, a
bot's text-to-speech) have raw PCM. Both go through libswresample (PyAV's `av.AudioResampler`), which also
converts the sample format. The channels are then averaged: libswresample's own stereo-to-mono matrix adds both
channels at -3 dB, which lifts a centred voice by 3 dB and can push it past full scale.

Timestamps are counted, not copied: a chunk's `pts` is the number of samples produced before it, in seconds,
so jitter in the sender's timestamps cannot bend the timeline. Input timestamps are consulted only to notice a
real gap (frames lost in transit): a forward jump between `gap_tolerance` and `max_gap` seconds moves the
timeline on by the gap, without inventing samples (the few samples of filter delay held across the gap are not
re-timed); anything else (small jitter, a jump back, a sender clock reset) is ignored.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

from streaming.frames import SAMPLE_RATE, AudioChunk, FloatAudio

_PCM_FORMATS = {np.dtype(np.int16): "s16", np.dtype(np.float32): "flt"}


class AudioResampler:
    """Converts audio frames or PCM arrays to 16 kHz mono float32 chunks; one instance per incoming stream."""

    def __init__(self, *, gap_tolerance: float = 0.1, max_gap: float = 10.0) -> None:
        if not 0 < gap_tolerance <= max_gap:
            raise ValueError(f"need 0 < gap_tolerance <= max_gap, got {gap_tolerance} and {max_gap}")
        self._gap_tolerance = gap_tolerance
        self._max_gap = max_gap
        self._resampler: av.AudioResampler | None = None
        self._input_signature: tuple[str, str, int] | None = None
        self._produced = 0
        self._expected_input_time: float | None = None
        self.gaps_skipped = 0.0
        """Seconds the timeline moved on over gaps in the input timestamps."""

    def resample(self, frame: av.AudioFrame) -> AudioChunk | None:
        """Convert one frame of any rate, layout and sample format. Returns None while the resampler is still
        filling its filter (the first few input samples) or the frame was empty."""
        if frame.sample_rate <= 0:
            raise ValueError(f"audio frame has no sample rate ({frame.sample_rate})")
        if not frame.samples:
            return None
        self._skip_gap_before(frame)
        resampler, tail = self._resampler_for(frame)
        produced = [tail, *(_mono(out) for out in resampler.resample(frame))]
        return self._emit(np.concatenate(produced))

    def resample_pcm(
        self, samples: npt.NDArray[np.int16] | npt.NDArray[np.floating], sample_rate: int, channels: int
    ) -> AudioChunk | None:
        """Convert raw PCM: int16 or float, interleaved (1-D, or `(1, n * channels)`) or planar `(channels, n)`."""
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        mono = _downmix(samples, channels)
        if not len(mono):
            return None
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format=_PCM_FORMATS[mono.dtype], layout="mono")
        frame.sample_rate = sample_rate
        return self.resample(frame)

    def flush(self) -> AudioChunk | None:
        """Drain the samples still held inside the resampler's filter, e.g. at the end of a stream."""
        return self._emit(self._drain())

    def _skip_gap_before(self, frame: av.AudioFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            self._expected_input_time = None
            return
        start = float(frame.pts * frame.time_base)
        if self._expected_input_time is not None:
            gap = start - self._expected_input_time
            if self._gap_tolerance <= gap <= self._max_gap:
                self._produced += round(gap * SAMPLE_RATE)
                self.gaps_skipped += gap
        self._expected_input_time = start + float(Fraction(frame.samples, frame.sample_rate))

    def _resampler_for(self, frame: av.AudioFrame) -> tuple[av.AudioResampler, FloatAudio]:
        """The resampler for this frame's format, and what the previous one still held if the format changed."""
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is not None and signature == self._input_signature:
            return self._resampler, np.zeros(0, dtype=np.float32)
        tail = self._drain()
        self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=SAMPLE_RATE)
        self._input_signature = signature
        return self._resampler, tail

    def _drain(self) -> FloatAudio:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = [_mono(out) for out in self._resampler.resample(None)]
        # A drained libswresample graph accepts no more input, so the next frame builds a fresh one.
        self._resampler = None
        self._input_signature = None
        return np.concatenate(tail) if tail else np.zeros(0, dtype=np.float32)

    def _emit(self, samples: FloatAudio) -> AudioChunk | None:
        if not len(samples):
            return None
        chunk = AudioChunk(samples=samples, pts=self._produced / SAMPLE_RATE)
        self._produced += len(samples)
        return chunk


def _mono(frame: av.AudioFrame) -> FloatAudio:
    planes = frame.to_ndarray()  # (channels, samples) float32: the resampler outputs planar fltp
    return np.asarray(planes.mean(axis=0), dtype=np.float32)


def _downmix(
    samples: npt.NDArray[np.int16] | npt.NDArray[np.floating], channels: int
) -> npt.NDArray[np.int16] | FloatAudio:
    """Average the channels of raw PCM into one 1-D int16 or float32 array."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if samples.ndim == 2 and samples.shape[0] == channels:
        planar = samples
    elif samples.ndim == 1 or (samples.ndim == 2 and samples.shape[0] == 1):
        interleaved = samples.reshape(-1)
        if len(interleaved) % channels:
            raise ValueError(f"{len(interleaved)} interleaved samples do not divide into {channels} channels")
        planar = interleaved.reshape(-1, channels).T
    else:
        raise ValueError(
            f"PCM of shape {samples.shape} is neither interleaved (1-D or (1, n * {channels})) "
            f"nor planar ({channels}, n)"
        )
    if samples.dtype == np.int16:
        if channels == 1:
            return np.ascontiguousarray(planar[0], dtype=np.int16)
        return np.asarray(np.round(planar.mean(axis=0)), dtype=np.int16)
    if np.issubdtype(samples.dtype, np.floating):
        return np.ascontiguousarray(planar.mean(axis=0), dtype=np.float32)
    raise ValueError(f"PCM must be int16 or float, got {samples.dtype}")
