"""An MP4 written live: H.264 video and AAC voice, each frame and each piece of audio at the time it is given.

Video frames keep their own times (millisecond resolution), so a recording shows exactly when each frame was
available, gaps and all. The voice is one continuous track: a piece that starts where the last one ended is
appended; one that starts later (by more than `AUDIO_RESYNC`) gets silence before it, and one that starts earlier
is trimmed, so the voice never drifts from the times it was given.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from server.media_files import AAC_FALLBACK_RATE, AAC_SAMPLE_RATES, MediaFileError
from streaming.frames import RgbImage

VIDEO_TIME_BASE = Fraction(1, 1000)
AUDIO_RESYNC = 0.015
"""Seconds a piece of audio may start away from the end of the last before the track is re-aligned to it."""


class Recording:
    def __init__(self, path: Path, *, width: int, height: int, sample_rate: int, fps: float = 25.0) -> None:
        self.path = path
        self.sample_rate = sample_rate
        try:
            self._container = av.open(str(path), mode="w")
        except (av.FFmpegError, OSError) as error:
            raise MediaFileError(f"cannot write {path}: {error}") from error
        self._video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = VIDEO_TIME_BASE
        self._video.codec_context.time_base = VIDEO_TIME_BASE
        self._video.options = {"crf": "20", "preset": "veryfast"}
        self._audio = self._container.add_stream(
            "aac", rate=sample_rate if sample_rate in AAC_SAMPLE_RATES else AAC_FALLBACK_RATE
        )
        self._audio.layout = "mono"
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=self._audio.rate)
        self._last_video_pts = -1
        self._audio_written = 0
        """Samples of voice written so far, at `sample_rate`, from time 0."""
        self.frames_written = 0

    def add_video(self, image: RgbImage, time: float) -> None:
        height, width = image.shape[:2]
        if (width, height) != (self._video.width, self._video.height):
            raise ValueError(f"a {width}x{height} frame in a {self._video.width}x{self._video.height} recording")
        pts = max(round(time / VIDEO_TIME_BASE), self._last_video_pts + 1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        self._container.mux(self._video.encode(frame))
        self._last_video_pts = pts
        self.frames_written += 1

    def add_audio(self, samples: npt.NDArray[np.int16], time: float) -> None:
        """Mono PCM16 at `sample_rate` whose first sample plays at `time` seconds."""
        start = round(time * self.sample_rate)
        gap = start - self._audio_written
        if abs(gap) > AUDIO_RESYNC * self.sample_rate:
            if gap > 0:
                self._write_audio(np.zeros(gap, dtype=np.int16))
            else:
                samples = samples[-gap:]
        self._write_audio(samples)

    def close(self) -> None:
        try:
            self._container.mux(self._video.encode(None))
            self._encode_audio(self._resampler.resample(None))
            self._container.mux(self._audio.encode(None))
        finally:
            self._container.close()

    def _write_audio(self, samples: npt.NDArray[np.int16]) -> None:
        if not len(samples):
            return
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts, frame.time_base = self._audio_written, Fraction(1, self.sample_rate)
        self._audio_written += len(samples)
        self._encode_audio(self._resampler.resample(frame))

    def _encode_audio(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self._container.mux(self._audio.encode(frame))
