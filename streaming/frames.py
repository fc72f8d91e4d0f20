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

    def frame_time(self, frame_index: int) -> float:
        return frame_index / self.fps

    def sample_offset(self, media_time: float) -> int:
        """Index into `samples` of the sample at `media_time`."""
        return round((media_time - self.start_time) * SAMPLE_RATE)


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One rendered frame: an RGB image and the media time of the audio it depicts (`index / fps`)."""

    image: RgbImage
    index: int
    pts: float
    speaking: bool = False
