"""A bot's voice on the media timeline: joined end to end across messages, cut exactly into frame slots."""

from __future__ import annotations

import itertools

import numpy as np

from server.voice_timeline import VoiceTimeline


def ramp(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int16)


def test_pieces_that_nearly_meet_are_joined_and_cut_into_slots_with_silence_around() -> None:
    voice = VoiceTimeline(sample_rate=24_000, fps=25.0)  # 960 samples per slot
    voice.place(0.05, ramp(0, 1000))
    voice.place(0.05 + 1000 / 24_000 - 0.002, ramp(1000, 500))  # lands 2 ms early: the resampler's delay
    assert voice.end == (1200 + 1500) / 24_000

    slots = [voice.take(slot) for slot in range(4)]

    assert [len(samples) for samples in slots] == [960] * 4
    played = np.concatenate(slots)
    assert not played[:1200].any()
    assert np.array_equal(played[1200:2700], ramp(0, 1500)), "no gap, no overlap, nothing lost"
    assert not played[2700:].any()
    assert voice.end == 0.0


def test_slots_of_a_rate_that_does_not_divide_the_frame_rate_tile_the_timeline() -> None:
    voice = VoiceTimeline(sample_rate=22_050, fps=24.0)
    bounds = [voice.slot_bounds(slot) for slot in range(48)]
    assert all(end == next_first for (_, end), (next_first, _) in itertools.pairwise(bounds))
    assert bounds[-1][1] == 2 * 22_050


def test_clearing_drops_what_was_queued() -> None:
    voice = VoiceTimeline(sample_rate=16_000, fps=25.0)
    voice.place(0.0, ramp(1, 3200))
    voice.clear()
    assert not voice.take(0).any()
