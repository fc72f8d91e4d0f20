"""Cutting returned audio into utterances, on audio laid out as the server returns it: frames of `SLOT` samples,
the bot's samples where they landed and zeros elsewhere."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from adapters.voice_segments import Returned, SegmentEnd, Voice, VoiceSegments, audible_pcm, mono_pcm

RATE = 8_000
SLOT = 320
"""Samples per frame: 40 ms at 8 kHz."""


def voice(samples: int, seed: int = 0) -> npt.NDArray[np.int16]:
    """Speech-like samples with digital silence at both ends and in the middle, as text-to-speech gives it."""
    pcm = np.random.default_rng(seed).integers(-3000, 3000, samples).astype(np.int16)
    pcm[:50] = 0
    pcm[samples // 2 : samples // 2 + 100] = 0
    pcm[-70:] = 0
    return pcm


def timeline(*pieces: tuple[int, npt.NDArray[np.int16]], length: int) -> npt.NDArray[np.int16]:
    """What the server returns: each (start sample, samples) in place, zeros elsewhere."""
    out = np.zeros(length, dtype=np.int16)
    for start, samples in pieces:
        out[start : start + len(samples)] = samples
    return out


def play(segments: VoiceSegments, returned: npt.NDArray[np.int16]) -> list[Returned]:
    """Feed `returned` frame by frame."""
    return [
        piece for slot in range(0, len(returned), SLOT) for piece in segments.returned(returned[slot : slot + SLOT])
    ]


def voice_of(outputs: list[Returned]) -> npt.NDArray[np.int16]:
    return np.concatenate([piece.pcm for piece in outputs if isinstance(piece, Voice)] or [np.zeros(0, np.int16)])


def ends(outputs: list[Returned]) -> list[SegmentEnd]:
    return [piece for piece in outputs if isinstance(piece, SegmentEnd)]


def test_an_utterance_comes_back_exactly_as_sent_and_ends_after_its_last_sample() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    said = voice(3000)
    sent = segments.outgoing(said[:1000])
    sent = np.concatenate([sent, segments.outgoing(said[1000:])])
    segments.end_utterance()

    assert not np.any(sent == 0), "digital silence goes out one step above zero"
    assert np.array_equal(sent, audible_pcm(said))
    outputs = play(segments, timeline((1234, sent), length=8000))
    assert np.array_equal(voice_of(outputs), sent), "voice from its first sample to its last, nothing else"
    assert ends(outputs) == [SegmentEnd(3000 / RATE, complete=True)]
    assert isinstance(outputs[-1], SegmentEnd), "the end comes after the last voice"
    assert segments.pending == 0


def test_back_to_back_utterances_split_inside_one_frame() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    first = segments.outgoing(voice(1000, seed=1))
    segments.end_utterance()
    second = segments.outgoing(voice(700, seed=2))
    segments.end_utterance()

    outputs = play(segments, timeline((400, first), (1400, second), length=4000))

    boundary = outputs.index(ends(outputs)[0])
    assert np.array_equal(voice_of(outputs[:boundary]), first)
    assert np.array_equal(voice_of(outputs[boundary:]), second)
    assert [end.complete for end in ends(outputs)] == [True, True]


def test_silence_the_server_put_in_where_the_bot_fell_behind_belongs_to_the_utterance() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    early = segments.outgoing(voice(800, seed=3))
    late = segments.outgoing(voice(800, seed=4))
    segments.end_utterance()

    outputs = play(segments, timeline((100, early), (1500, late), length=4000))

    assert np.array_equal(voice_of(outputs), timeline((0, early), (1400, late), length=2200))
    (end,) = ends(outputs)
    assert end == SegmentEnd(2200 / RATE, complete=True)


def test_an_utterance_with_nothing_sent_ends_at_the_next_frame() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    segments.end_utterance()
    assert segments.returned(np.zeros(SLOT, np.int16)) == [SegmentEnd(0.0, complete=True)]


def test_an_utterance_part_of_which_never_comes_back_ends_after_the_quiet_limit() -> None:
    segments = VoiceSegments(RATE, quiet_limit=0.5)
    sent = segments.outgoing(voice(2000, seed=5))
    segments.end_utterance()

    outputs = play(segments, timeline((0, sent[:1200]), length=1200 + 4 * RATE))

    (end,) = ends(outputs)
    assert not end.complete
    assert 1200 / RATE + 0.5 <= end.played <= 1200 / RATE + 0.5 + SLOT / RATE
    assert np.array_equal(voice_of(outputs)[:1200], sent[:1200])


def test_an_unfinished_utterance_waits_for_the_rest_however_long() -> None:
    segments = VoiceSegments(RATE, quiet_limit=0.5)
    sent = segments.outgoing(voice(400, seed=6))
    assert not ends(play(segments, timeline((0, sent), length=4 * RATE)))
    assert segments.pending == 1


def test_clear_drops_every_utterance_and_ignores_old_voice_until_the_server_confirms() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    old = segments.outgoing(voice(3000, seed=7))
    segments.end_utterance()
    assert np.array_equal(voice_of(play(segments, old[:640])), old[:640])

    segments.clear()
    new = segments.outgoing(voice(900, seed=8))
    segments.end_utterance()
    in_flight = play(segments, old[640:1280])
    segments.confirm_clear()
    after = play(segments, timeline((300, new), length=2000))

    assert in_flight == [], "the old voice still on its way plays no more and ends nothing"
    assert np.array_equal(voice_of(after), new)
    assert ends(after) == [SegmentEnd(900 / RATE, complete=True)]


def test_abandon_reports_each_pending_utterance_as_it_stands() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    sent = segments.outgoing(voice(2000, seed=9))
    segments.end_utterance()
    segments.outgoing(voice(500, seed=10))
    play(segments, timeline((0, sent[:SLOT]), length=SLOT))

    assert [segments.abandon(), segments.abandon()] == [
        SegmentEnd(SLOT / RATE, complete=False),
        SegmentEnd(0.0, complete=False),
    ]
    assert segments.pending == 0


def test_slots_the_server_skipped_are_played_as_silence_of_their_length() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    sent = segments.outgoing(voice(3000, seed=11))
    segments.end_utterance()
    returned = timeline((200, sent), length=4000)

    outputs = [
        *segments.returned(returned[:SLOT]),
        *segments.returned(returned[SLOT : 2 * SLOT]),
        *segments.returned(returned[4 * SLOT : 5 * SLOT], skipped=2 * SLOT),
        *play(segments, returned[5 * SLOT :]),
    ]

    played = voice_of(outputs)
    assert len(played) == len(sent), "the utterance keeps its length"
    skipped = slice(2 * SLOT - 200, 4 * SLOT - 200)
    assert not played[skipped].any()
    assert np.array_equal(np.delete(played, skipped), np.delete(sent, skipped))
    assert ends(outputs) == [SegmentEnd(3000 / RATE, complete=False)]


def test_a_skip_in_a_pause_of_an_unfinished_utterance_is_all_silence() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    sent = segments.outgoing(voice(500, seed=12))
    play(segments, timeline((0, sent), length=2 * SLOT))
    assert len(voice_of(segments.returned(np.zeros(SLOT, np.int16), skipped=3 * SLOT))) == 4 * SLOT
    assert segments.pending == 1


def test_interleaved_channels_are_mixed_to_mono() -> None:
    stereo = np.array([[100, 300], [-5, -6], [0, 0]], dtype=np.int16)
    assert mono_pcm(stereo.tobytes(), 2).tolist() == [200, -6, 0]
    assert mono_pcm(stereo.tobytes(), 1).tolist() == stereo.reshape(-1).tolist()


def test_a_start_lost_in_skipped_slots_is_made_up_with_silence_at_the_end() -> None:
    segments = VoiceSegments(RATE, quiet_limit=1.0)
    sent = segments.outgoing(voice(3000, seed=13))
    segments.end_utterance()
    returned = timeline((SLOT + 100, sent), length=12 * SLOT)  # it starts in the slots skipped below

    outputs = [
        *segments.returned(returned[:SLOT]),
        *segments.returned(returned[3 * SLOT : 4 * SLOT], skipped=2 * SLOT),
        *play(segments, returned[4 * SLOT :]),
    ]

    played = voice_of(outputs)
    heard = sent[2 * SLOT - 100 :]
    assert len(played) == len(sent), "the utterance keeps its length"
    assert np.array_equal(played[: len(heard)], heard) and not played[len(heard) :].any()
    assert ends(outputs) == [SegmentEnd(3000 / RATE, complete=False)]
    assert isinstance(outputs[-1], SegmentEnd) and len(voice_of(outputs[:-1])) == len(sent), "ended at once"
