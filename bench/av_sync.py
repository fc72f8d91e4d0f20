"""Lip sync read back from a recording: where the mouth starts to move against where the voice's envelope rises.

For every onset of the voice (its loudness envelope rising after a pause), the first frame after it that shows
the mouth open, as the latency benchmark pairs them live. The offset is positive when the sound comes first (the
sign convention of ITU-R BT.1359, whose detectability window is +45/-125 ms). Onsets are sharp events in both
tracks, so the measure holds up where frames are dropped or repeated, which blur a correlation of whole curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from bench.latency import IDLE_MARGIN, MIN_OPEN, PAIRING_WINDOW, onsets
from bench.mouth_probe import MouthProbe
from server.speaking_track import MIC_RATE

SEARCH = 0.3
"""Seconds before a voice onset an opening mouth still counts as its (the picture may lead the sound)."""


@dataclass(frozen=True)
class Recorded:
    frame_times: npt.NDArray[np.float64]
    openness: npt.NDArray[np.float64]
    voice: npt.NDArray[np.float32]
    """Mono, from time 0."""
    rate: int


def read_recording(path: Path, probe: MouthProbe) -> Recorded:
    """The mouth's openness in every frame, with the frame's time, and the voice, of an MP4 or similar file."""
    times, openness, pieces = [], [], []
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        for picture in container.decode(video=0):
            assert picture.pts is not None and picture.time_base is not None
            times.append(float(picture.pts * picture.time_base))
            image = np.asarray(picture.to_ndarray(format="rgb24"), dtype=np.uint8)
            openness.append(probe.openness(probe.crop(image)))
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for sound in container.decode(audio=0):
            assert sound.pts is not None and sound.time_base is not None
            start = round(float(sound.pts * sound.time_base) * rate)
            for out in resampler.resample(sound):
                pieces.append((start, out.to_ndarray().reshape(-1)))
                start += out.samples
    end = max(start + len(samples) for start, samples in pieces)
    voice = np.zeros(max(0, end), dtype=np.float32)
    for start, samples in pieces:
        kept = samples[max(0, -start) :]
        voice[max(0, start) : max(0, start) + len(kept)] = kept
    return Recorded(np.array(times), np.array(openness), voice, rate)


def lip_sync_offsets(recorded: Recorded) -> tuple[list[float], int]:
    """For each onset of the voice (a loud 10 ms after half a second of quiet), the first frame after it with the
    mouth open minus the onset, in seconds (+ = sound first); and how many onsets had no open mouth near them.
    Open means more dark pixels, by `IDLE_MARGIN`, than any frame showed well before the first onset."""
    if recorded.rate != MIC_RATE:
        raise ValueError(f"onsets are found at {MIC_RATE} Hz, not {recorded.rate} Hz")
    voice_onsets = [index / recorded.rate for index in onsets(recorded.voice)]
    if not voice_onsets:
        return [], 0
    # Well before the first onset: the mouth may start to open a little before the sound does.
    idle = recorded.openness[recorded.frame_times < voice_onsets[0] - SEARCH]
    threshold = max(MIN_OPEN, float(idle.max(initial=0.0)) + IDLE_MARGIN)
    offsets, missed = [], 0
    for onset in voice_onsets:
        near = (recorded.frame_times >= onset - SEARCH) & (recorded.frame_times < onset + PAIRING_WINDOW)
        opened = recorded.frame_times[near & (recorded.openness > threshold)]
        if len(opened):
            offsets.append(float(opened[0] - onset))
        else:
            missed += 1
    return offsets, missed
