from __future__ import annotations

import numpy as np
import pytest

from streaming.frames import SAMPLE_RATE
from streaming.vad import VadDecision, VadGate
from tests.streaming.signals import Speech, silence


class ScriptedClassifier:
    """Says voiced or not from a script, one verdict per frame, whatever the audio."""

    def __init__(self, script: str) -> None:
        self.verdicts = [mark == "1" for mark in script]
        self.calls = 0

    def is_speech(self, buf: bytes, sample_rate: int) -> bool:
        assert sample_rate == SAMPLE_RATE
        verdict = self.verdicts[self.calls]
        self.calls += 1
        return verdict


def scripted_gate(script: str) -> VadGate:
    """10 ms frames, 30 ms (3 frames) to open, 50 ms (5 frames) of hangover; no level floor, no warm-up."""
    return VadGate(
        frame_ms=10,
        start_ms=30.0,
        end_ms=50.0,
        min_level_dbfs=None,
        warmup_ms=0.0,
        classifier=ScriptedClassifier(script),
    )


def frames(count: int) -> np.ndarray:
    return silence(count * 0.01)


def gate_string(decisions: list[VadDecision]) -> str:
    return "".join("S" if decision.speech else "." for decision in decisions)


def test_hysteresis_opens_after_start_ms_back_dated_and_closes_after_end_ms() -> None:
    # frame:     0    5    10   15   20   25
    script = "0000011000111100010000001"
    gate = scripted_gate(script)
    decisions = gate.push(frames(len(script))) + gate.flush()
    # A 2-frame run is too short to open (30 ms = 3 frames); the 4-frame run opens from its first frame (10);
    # 3 silent frames are within the 50 ms hangover; the gate closes on the 6th silent frame after frame 17.
    assert gate_string(decisions) == ".........." + "SSSSSSSSSSSSS" + ".."
    assert [decision.start for decision in decisions] == pytest.approx([index * 0.01 for index in range(len(script))])
    assert [decision.voiced for decision in decisions] == [mark == "1" for mark in script]


def test_a_run_is_held_back_until_it_is_long_enough_then_released_from_its_start() -> None:
    gate = scripted_gate("0011100")
    assert len(gate.push(frames(2))) == 2
    assert gate.push(frames(2)) == []  # frames 2 and 3 are voiced, but the run is still too short to say
    assert gate.decided_until == pytest.approx(0.02)
    assert not gate.is_open
    released = gate.push(frames(1))
    assert [decision.start for decision in released] == pytest.approx([0.02, 0.03, 0.04])
    assert all(decision.speech for decision in released)
    assert gate.is_open
    assert gate.decided_until == pytest.approx(0.05)


def test_flush_resolves_a_short_run_as_silence_and_decides_the_partial_frame() -> None:
    gate = scripted_gate("0110")
    decisions = gate.push(silence(0.035))  # three whole frames and half of a fourth
    assert gate_string(decisions) == "."
    decisions += gate.flush()
    assert gate_string(decisions) == "...."
    assert decisions[-1].end == pytest.approx(0.035)
    assert gate.decided_until == pytest.approx(0.035)


def test_reset_closes_the_gate_and_moves_its_timeline() -> None:
    gate = scripted_gate("111111")
    gate.push(frames(3))
    assert gate.is_open
    gate.reset(start_time=10.0)
    assert not gate.is_open
    released = gate.push(frames(3))
    assert released[0].start == pytest.approx(10.0)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_real_speech_opens_the_gate_at_its_onset_and_closes_it_after_the_last_syllable(
    speech: Speech, frame_ms: int
) -> None:
    rng = np.random.default_rng(0)
    lead = 1.0
    audio = np.concatenate([silence(lead), speech.samples, silence(1.0)])
    audio += rng.normal(0.0, 0.003, len(audio)).astype(np.float32)  # a quiet room (about -50 dBFS)
    gate = VadGate(frame_ms=frame_ms, start_ms=60.0, end_ms=240.0)
    decisions = gate.push(audio) + gate.flush()

    stretches = speech_stretches(decisions)
    # Pauses between words stay inside the gate; the pause between the two sentences is longer than the hangover.
    assert len(stretches) == 2
    (opened, _), (_, closed) = stretches
    assert lead + speech.onset - 0.05 <= opened <= lead + speech.onset + 0.08
    assert lead + speech.offset + 0.2 <= closed <= lead + speech.offset + 0.5
    pause_start, pause_end = speech.longest_pause
    assert lead + pause_start < stretches[0][1] < lead + pause_end
    assert lead + pause_start < stretches[1][0] < lead + pause_end
    assert decisions[-1].end == pytest.approx(len(audio) / SAMPLE_RATE)


def speech_stretches(decisions: list[VadDecision]) -> list[tuple[float, float]]:
    """(open, close) media times of each stretch of consecutive speech decisions."""
    stretches: list[tuple[float, float]] = []
    for decision in decisions:
        if not decision.speech:
            continue
        if stretches and stretches[-1][1] == decision.start:
            stretches[-1] = (stretches[-1][0], decision.end)
        else:
            stretches.append((decision.start, decision.end))
    return stretches


def test_silence_and_steady_room_noise_never_open_the_gate() -> None:
    rng = np.random.default_rng(1)
    for audio in (silence(3.0), rng.normal(0.0, 0.01, 3 * SAMPLE_RATE).astype(np.float32)):
        gate = VadGate()
        assert not any(decision.speech for decision in gate.push(audio) + gate.flush())


def test_clicks_are_voiced_for_a_frame_but_too_short_to_open_the_gate() -> None:
    rng = np.random.default_rng(2)
    audio = rng.normal(0.0, 0.002, 3 * SAMPLE_RATE).astype(np.float32)
    for start in range(SAMPLE_RATE // 2, len(audio), SAMPLE_RATE // 2):
        audio[start : start + 80] += rng.normal(0.0, 0.3, 80).astype(np.float32)  # 5 ms clicks
    gate = VadGate(start_ms=60.0)
    decisions = gate.push(audio) + gate.flush()
    assert any(decision.voiced for decision in decisions)
    assert not any(decision.speech for decision in decisions)


def test_aggressiveness_decides_how_readily_loud_noise_counts_as_speech() -> None:
    noise = np.random.default_rng(3).normal(0.0, 0.03, 3 * SAMPLE_RATE).astype(np.float32)
    opened = {}
    for aggressiveness in (0, 3):
        gate = VadGate(aggressiveness=aggressiveness)
        opened[aggressiveness] = sum(decision.speech for decision in gate.push(noise) + gate.flush())
    assert opened[0] > 50
    assert opened[3] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"frame_ms": 25}, "frame_ms"), ({"aggressiveness": 4}, "aggressiveness"), ({"start_ms": -1.0}, "negative")],
)
def test_bad_settings_are_refused(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VadGate(**arguments)  # type: ignore[arg-type]


def test_audio_must_be_mono() -> None:
    with pytest.raises(ValueError, match="mono"):
        VadGate().push(np.zeros((2, 320), dtype=np.float32))
