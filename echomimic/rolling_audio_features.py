"""Audio conditioning for a live session: per-frame whisper chunks from a bounded rolling history of the voice.

Offline (`echomimic.audio_features`) the clip's log-mel is cut into 30 s segments from its start, each zero-padded
to 3000 mel frames and encoded by whisper on its own; frame i takes the ten token rows around global token
int(i·50/fps). Live, the session's timeline is cut into the same 30 s segments from its start. For a window, the
segment(s) its frames' rows fall in are encoded from the audio heard so far (look-ahead included), zero-padded in
the mel domain exactly as offline pads the clip's last segment, and every frame takes the same rows as offline.

So a live frame's features differ from offline only by what has not been heard yet: the encoder attends over the
whole segment, and offline that includes the audio after the look-ahead; and the log-mel floor follows the loudest
audio heard so far rather than the loudest of the whole clip. `tests/echomimic/test_rolling_audio_features.py`
measures the difference on the conformance audio. Padding to the full segment matters: the encoder attends to
the padding, and a shorter input moves the features far more than the missing future does (the same test shows it).

Memory is bounded: the current segment and the one before it (a window can straddle a boundary), 60 s at most.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from echomimic.acceleration.host_transfer import to_device
from echomimic.audio_features import (
    HOP_LENGTH,
    MEL_FRAMES_PER_TOKEN,
    N_FFT,
    N_MELS,
    SEGMENT_MEL_FRAMES,
    TOKENS_AFTER_FRAME,
    TOKENS_BEFORE_FRAME,
    TOKENS_PER_SECOND,
    log_mel_power,
    normalise_log_mel,
)
from echomimic.models.whisper_encoder import WhisperAudioEncoder

SAMPLES_PER_TOKEN = HOP_LENGTH * MEL_FRAMES_PER_TOKEN  # 320
OFFICIAL_SEGMENT_SECONDS = SEGMENT_MEL_FRAMES * HOP_LENGTH / 16_000  # 30 s


class RollingAudioFeatures:
    """One session's audio history and the per-frame chunks [frames, 50, 384] of frames near its end."""

    def __init__(
        self, encoder: WhisperAudioEncoder, fps: float, segment_seconds: float = OFFICIAL_SEGMENT_SECONDS
    ) -> None:
        """`segment_seconds` below the official 30 encode shorter segments padded to their own length: cheaper on
        a CPU, further from the official features (the encoder attends to its padding)."""
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 1.0 <= segment_seconds <= OFFICIAL_SEGMENT_SECONDS:
            raise ValueError(
                f"segment_seconds must be between 1 and {OFFICIAL_SEGMENT_SECONDS:g}, got {segment_seconds}"
            )
        self.encoder = encoder
        self.fps = fps
        self.segment_tokens = round(segment_seconds * TOKENS_PER_SECOND)
        self._segment_samples = self.segment_tokens * SAMPLES_PER_TOKEN
        self._segments: dict[int, npt.NDArray[np.float32]] = {}  # segment number → its samples, zeros unheard
        self._end = 0  # timeline sample one past the newest written
        self._loudest: torch.Tensor | None = None  # the loudest log10 mel power heard, for the floor

    @property
    def history_bytes(self) -> int:
        return sum(samples.nbytes for samples in self._segments.values())

    def write(self, start_sample: int, samples: npt.NDArray[np.float32]) -> None:
        """Put audio on the timeline at `start_sample` (overwriting what was there). Segments older than the one
        before the newest are forgotten."""
        length = self._segment_samples
        end = start_sample + len(samples)
        position = max(0, start_sample)
        while position < end:
            number = position // length
            stop = min(end, (number + 1) * length)
            segment = self._segments.setdefault(number, np.zeros(length, dtype=np.float32))
            segment[position - number * length : stop - number * length] = samples[
                position - start_sample : stop - start_sample
            ]
            position = stop
        self._end = max(self._end, end)
        newest = (self._end - 1) // self._segment_samples if self._end else 0
        for number in [number for number in self._segments if number < newest - 1]:
            del self._segments[number]

    def restart_at(self, sample: int) -> None:
        """Forget all audio (an interruption, or the end of the session): the timeline before `sample` reads as
        silence, and the next write lands at `sample`."""
        self._segments.clear()
        self._end = sample

    @torch.no_grad()
    def chunks(self, first_frame: int, num_frames: int) -> torch.Tensor:
        """Audio chunks [num_frames, 50, 384] for frames `first_frame` …, on the encoder's device and dtype.

        Rows past the newest token heard are clamped to it, as offline clamps them at the end of the clip.
        """
        centres = torch.tensor(
            [int(frame * TOKENS_PER_SECOND / self.fps) for frame in range(first_frame, first_frame + num_frames)]
        )
        rows = centres[:, None] + torch.arange(-TOKENS_BEFORE_FRAME, TOKENS_AFTER_FRAME + 1)[None, :]  # [F, 10]
        heard_tokens = max(1, -(-self._end // SAMPLES_PER_TOKEN))
        rows = rows.clamp(0, heard_tokens - 1)
        first_segment = int(rows.min()) // self.segment_tokens
        states = torch.cat(
            [self._encode(number) for number in range(first_segment, int(rows.max()) // self.segment_tokens + 1)]
        )  # [tokens, 5, 384] from the first segment's first token
        local = to_device(rows - first_segment * self.segment_tokens, states.device)
        return states[local].flatten(1, 2)  # [F, 10, 5, 384] → [F, 50, 384]

    def _encode(self, number: int) -> torch.Tensor:
        """Segment `number` as offline encodes it: its heard audio's log-mel, zero-padded to the segment's length
        (3000 mel frames at the official 30 s)."""
        heard = min(self._segment_samples, self._end - number * self._segment_samples)
        segment = self._segments.get(number)
        mel = torch.zeros(N_MELS, 0, device=self.encoder.device)
        if segment is not None and heard > N_FFT // 2:
            log_power = log_mel_power(segment[:heard], device=self.encoder.device)  # [80, frames]
            loudest = log_power.max()  # stays on the device: no host synchronisation per window
            self._loudest = loudest if self._loudest is None else torch.maximum(self._loudest, loudest)
            mel = normalise_log_mel(log_power, self._loudest)
        padded = F.pad(mel, (0, MEL_FRAMES_PER_TOKEN * self.segment_tokens - mel.shape[1]))  # [80, 3000]
        states: torch.Tensor = self.encoder(padded[None])[0]  # [segment tokens, 5, 384]
        return states
