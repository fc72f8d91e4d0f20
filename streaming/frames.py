"""The typed messages that flow through a stream: audio in, windows to render, video out.

Every media datum carries its presentation time on the session's audio timeline (seconds since the stream
started). That audio timeline is the one master clock: a video frame's `pts` is the time
of the audio it depicts, so lips stay on the voice however long a session runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
"""Everything after the resampler is 16 kHz mono float32 in [-1, 1]; both renderers expect it."""

FloatAudio = npt.NDArray[np.float32]
RgbImage = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A run of 16 kHz mono samples and the media time of its first sample."""

    samples: FloatAudio
    pts: float

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class IdlePose:
    """The small always-on motion of a live face, for one video frame.

    Offsets and roll are relative to the face: `head_offset` is in face widths, `head_roll` in degrees.
    `blink` is eyelid closure (0 open, 1 shut); `breath` is the breathing phase in [-1, 1].
    """

    head_offset: tuple[float, float] = (0.0, 0.0)
    head_roll: float = 0.0
    blink: float = 0.0
    breath: float = 0.0


@dataclass(frozen=True, slots=True)
class AudioWindow:
    """The audio a renderer needs to draw `frame_count` frames starting at global frame `first_frame`.

    `samples` start at media time `start_time`. They cover `context_frames` frames before `first_frame`
    (already shown; given for continuity), the frames to draw, and `lookahead` seconds after the last one.
    Frame `k` depicts the audio from `k / fps` to `(k + 1) / fps`. `ends_speech` marks the last window of an
    utterance: the frames after it are idle, so a renderer can bring the face back to its idle pose.
    `frame_stride` above 1 (only for a renderer whose `WindowSpec.max_frame_stride` allows it) asks for the
    frames whose index is a multiple of it only (`drawn_frames`); the stream shows each until the next one.
    """

    samples: FloatAudio
    start_time: float
    fps: float
    first_frame: int
    frame_count: int
    context_frames: int
    lookahead: float
    poses: tuple[IdlePose, ...]
    ends_speech: bool = False
    frame_stride: int = 1

    @property
    def drawn_frames(self) -> range:
        """The frame indices to draw, one image each, in order."""
        return strided_frames(self.first_frame, self.frame_count, self.frame_stride)

    def frame_time(self, frame_index: int) -> float:
        return frame_index / self.fps

    def sample_offset(self, media_time: float) -> int:
        """Index into `samples` of the sample at `media_time`."""
        return round((media_time - self.start_time) * SAMPLE_RATE)


def strided_frames(first_frame: int, frame_count: int, stride: int) -> range:
    """The indices among `first_frame`, ..., `first_frame + frame_count - 1` that are multiples of `stride`."""
    first_drawn = -(-first_frame // stride) * stride
    return range(first_drawn, first_frame + frame_count, stride)


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One rendered frame: an RGB image and the media time of the audio it depicts (`index / fps`)."""

    image: RgbImage
    index: int
    pts: float
    speaking: bool = False
