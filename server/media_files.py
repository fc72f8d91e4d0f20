"""Reading audio files and writing the rendered video, with the original audio muxed in, through PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from streaming.frames import SAMPLE_RATE, RgbImage

AAC_SAMPLE_RATES = frozenset(
    {8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 64_000, 88_200, 96_000}
)
AAC_FALLBACK_RATE = 48_000
SOURCE_RATES = range(4_000, 768_001)
"""Sample rates a speech file may have: below, FFmpeg cannot write the audio back out (after the whole render),
and nothing real is recorded above."""


class MediaFileError(ValueError):
    """A file that cannot be read or written as the media it should be; the message is for the user."""


def read_speech(path: Path, rate: int = SAMPLE_RATE) -> npt.NDArray[np.float32]:
    """Decode the first audio stream of any file PyAV reads to mono float32 at `rate` (default 16 kHz)."""
    if not path.is_file():
        raise MediaFileError(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaFileError(f"{path} has no audio stream")
            # PyAV gives a stream no codec context when FFmpeg has no decoder for it.
            codec = container.streams.audio[0].codec_context
            if codec is None:
                raise MediaFileError(f"{path} holds audio in a form that cannot be decoded")
            source_rate = codec.sample_rate
            if source_rate not in SOURCE_RATES:
                raise MediaFileError(
                    f"{path} is sampled at {source_rate} Hz; speech files must be {SOURCE_RATES.start} to "
                    f"{SOURCE_RATES.stop - 1} Hz"
                )
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            pieces = [
                out.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for out in resampler.resample(frame)
            ]
            pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.FFmpegError as error:
        raise MediaFileError(f"cannot read audio from {path}: {error}") from error
    if not pieces:
        raise MediaFileError(f"{path} holds no audio samples")
    return np.concatenate(pieces).astype(np.float32, copy=False)


class VideoFileWriter:
    """Writes frames as they come as H.264 (yuv420p), then the source file's audio as AAC at its own rate.

    Both tracks start at time zero, as the renderer saw them, so lips and voice line up. Frames are encoded one by
    one, so a long render never holds the whole video in memory.
    """

    def __init__(self, output: Path, fps: float, frame_size: tuple[int, int], audio_source: Path) -> None:
        self._output = output
        self._frame_rate = Fraction(fps).limit_denominator(1001)
        self.frames_written = 0
        # The source first: if it cannot be read, no empty output file is left behind.
        try:
            self._source = av.open(str(audio_source))
        except (av.FFmpegError, OSError) as error:
            raise MediaFileError(f"cannot read audio from {audio_source}: {error}") from error
        try:
            self._container = av.open(str(output), mode="w")
        except (av.FFmpegError, OSError) as error:
            self._source.close()
            raise MediaFileError(f"cannot write {output}: {error}") from error
        self._video = self._container.add_stream("libx264", rate=self._frame_rate)
        self._video.width, self._video.height = frame_size
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": "20", "preset": "veryfast"}
        source_audio = self._source.streams.audio[0]
        rate = source_audio.rate if source_audio.rate in AAC_SAMPLE_RATES else AAC_FALLBACK_RATE
        self._layout = "mono" if source_audio.channels == 1 else "stereo"
        self._audio = self._container.add_stream("aac", rate=rate)
        self._audio.layout = self._layout

    def write(self, image: RgbImage) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = 1 / self._frame_rate
        self._container.mux(self._video.encode(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the video encoder, append the audio, and finish the file."""
        try:
            self._container.mux(self._video.encode(None))
            resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self._audio.rate)
            for source_frame in self._source.decode(audio=0):
                source_frame.pts = None
                self._mux_audio(resampler.resample(source_frame))
            self._mux_audio(resampler.resample(None))
            self._container.mux(self._audio.encode(None))
        finally:
            self._source.close()
            self._container.close()

    def __enter__(self) -> VideoFileWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def abandon(self) -> None:
        """Give up on a render that failed or was interrupted: close everything and delete the partial file, so a
        truncated video is never mistaken for a finished one."""
        self._source.close()
        self._container.close()
        self._output.unlink(missing_ok=True)

    def _mux_audio(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self._container.mux(self._audio.encode(frame))
