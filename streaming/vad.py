"""A speech gate on top of WebRTC's voice activity detector, with hysteresis at both ends.

`webrtcvad` classifies each 10, 20 or 30 ms frame of 16 kHz int16 audio as voiced or not. Two of its habits
are corrected first: it keeps saying "voiced" for a few frames after any loud transient, however quiet they are
(so a frame must also be louder than `min_level_dbfs`), and it says "voiced" to almost anything while its noise
model warms up (so the first `warmup_ms` count as unvoiced).

Raw verdicts flicker, so the gate only opens once voiced frames have lasted `start_ms` without a break, and then
it back-dates the opening to the first of them, so the onset of a word is not cut. It closes only after `end_ms`
without a voiced frame (the hangover), so a trailing syllable is not cut either.

Back-dating means a decision is final only once the run it belongs to is resolved: frames of a run that has not
yet lasted `start_ms` are held back. `decided_until` says how far decisions are final.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import webrtcvad

from streaming.frames import SAMPLE_RATE

Int16Audio = npt.NDArray[np.int16]

FRAME_DURATIONS_MS = (10, 20, 30)
"""The frame lengths `webrtcvad` accepts."""


class SpeechClassifier(Protocol):
    """Says whether one frame of 16 kHz mono int16 PCM (`bytes`) is voiced. `webrtcvad.Vad` is one."""

    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class VadDecision:
    """The gate's verdict for one frame of audio, from media time `start` to `end`."""

    start: float
    end: float
    voiced: bool
    """The frame's own verdict, before hysteresis."""
    speech: bool
    """Whether the gate is open for this frame."""


class VadGate:
    """Feeds audio through a speech classifier and returns final per-frame gate decisions with media times."""

    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        frame_ms: int = 20,
        start_ms: float = 60.0,
        end_ms: float = 240.0,
        min_level_dbfs: float | None = -50.0,
        warmup_ms: float = 120.0,
        classifier: SpeechClassifier | None = None,
    ) -> None:
        if frame_ms not in FRAME_DURATIONS_MS:
            raise ValueError(f"frame_ms must be one of {FRAME_DURATIONS_MS} (webrtcvad's frame sizes), got {frame_ms}")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness}")
        if start_ms < 0 or end_ms < 0 or warmup_ms < 0:
            raise ValueError(f"durations must not be negative ({start_ms=}, {end_ms=}, {warmup_ms=})")
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000
        # Hysteresis is counted in whole frames, rounded up so the gate is never quicker than asked.
        self._start_frames = max(1, math.ceil(start_ms / frame_ms))
        self._hangover_frames = math.ceil(end_ms / frame_ms)
        # Compared with the mean square of int16 samples, to avoid a log per frame.
        self._min_power = None if min_level_dbfs is None else (32768.0 * 10 ** (min_level_dbfs / 20)) ** 2
        # The classifier's noise model adapts once per gate, so warming up is not repeated by `reset`.
        self._warmup_frames_left = math.ceil(warmup_ms / frame_ms)
        self._classifier: SpeechClassifier = classifier if classifier is not None else webrtcvad.Vad(aggressiveness)
        self.reset(start_time=0.0)

    def reset(self, start_time: float) -> None:
        """Forget all audio and close the gate; the next sample pushed is at media time `start_time`."""
        self._start_time = start_time
        self._position = 0
        self._decided = 0
        self._partial: Int16Audio = np.zeros(0, dtype=np.int16)
        self._open = False
        self._silent_run = 0
        self._held: list[tuple[int, int]] = []

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def decided_until(self) -> float:
        """Media time up to which every decision has been returned and is final."""
        return self._time(self._decided)

    def push(self, samples: npt.NDArray[np.float32] | Int16Audio) -> list[VadDecision]:
        """Add audio (float in [-1, 1], or int16) and return the decisions it made final, in order."""
        pcm = np.concatenate([self._partial, _to_int16(samples)])
        whole = len(pcm) - len(pcm) % self.frame_samples
        self._partial = pcm[whole:]
        decisions: list[VadDecision] = []
        for offset in range(0, whole, self.frame_samples):
            decisions += self._classify(pcm[offset : offset + self.frame_samples], self.frame_samples)
        return decisions

    def flush(self) -> list[VadDecision]:
        """End of audio: classify the last partial frame (zero-padded) and resolve a run too short to open the
        gate as silence. Returns the remaining decisions; afterwards every pushed sample is decided."""
        decisions: list[VadDecision] = []
        if len(self._partial):
            padded = np.zeros(self.frame_samples, dtype=np.int16)
            padded[: len(self._partial)] = self._partial
            decisions += self._classify(padded, len(self._partial))
            self._partial = np.zeros(0, dtype=np.int16)
        decisions += self._release_held(speech=False)
        return decisions

    def _classify(self, frame: Int16Audio, length: int) -> list[VadDecision]:
        start = self._position
        self._position += length
        # Always consult the classifier, even when its verdict is overruled, so that its noise model keeps adapting.
        voiced = self._classifier.is_speech(frame.tobytes(), SAMPLE_RATE) and self._loud_enough(frame)
        if self._warmup_frames_left:
            self._warmup_frames_left -= 1
            voiced = False
        return self._on_voiced(start, length) if voiced else self._on_unvoiced(start, length)

    def _loud_enough(self, frame: Int16Audio) -> bool:
        if self._min_power is None:
            return True
        return float(np.mean(np.square(frame, dtype=np.float64))) >= self._min_power

    def _on_voiced(self, start: int, length: int) -> list[VadDecision]:
        if self._open:
            self._silent_run = 0
            return [self._decide(start, length, voiced=True, speech=True)]
        self._held.append((start, length))
        if len(self._held) < self._start_frames:
            return []
        self._open = True
        self._silent_run = 0
        return self._release_held(speech=True)

    def _on_unvoiced(self, start: int, length: int) -> list[VadDecision]:
        if self._open:
            self._silent_run += 1
            if self._silent_run <= self._hangover_frames:
                return [self._decide(start, length, voiced=False, speech=True)]
            self._open = False
            return [self._decide(start, length, voiced=False, speech=False)]
        too_short = self._release_held(speech=False)
        return [*too_short, self._decide(start, length, voiced=False, speech=False)]

    def _release_held(self, *, speech: bool) -> list[VadDecision]:
        released = [self._decide(start, length, voiced=True, speech=speech) for start, length in self._held]
        self._held = []
        return released

    def _decide(self, start: int, length: int, *, voiced: bool, speech: bool) -> VadDecision:
        self._decided = start + length
        return VadDecision(start=self._time(start), end=self._time(start + length), voiced=voiced, speech=speech)

    def _time(self, position: int) -> float:
        return self._start_time + position / SAMPLE_RATE


def _to_int16(samples: npt.NDArray[np.float32] | Int16Audio) -> Int16Audio:
    if samples.ndim != 1:
        raise ValueError(f"the VAD takes mono audio as a 1-D array, got shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples.astype(np.int16, copy=False)
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"the VAD takes float audio in [-1, 1] or int16, got {samples.dtype}")
    scaled = np.clip(samples.astype(np.float32, copy=False), -1.0, 1.0) * np.float32(32767.0)
    return np.round(scaled).astype(np.int16)
