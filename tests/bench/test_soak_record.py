"""What the soak counts for one session, on made-up arrivals: late frames, skipped slots, stalls, A/V drift."""

from __future__ import annotations

import email.message
import urllib.error

import pytest

from bench.soak import FIRST_FRAME_WAIT, LATE_TOLERANCE, REFUSED_RETRY, STALL, SessionRecord, refusal_wait
from server.bot_client import BotRefused
from server.bot_protocol import CloseCode

FPS = 25.0


def session(arrival_delay: float = 0.0, audio_lag: float = 0.0, seconds: float = 20.0) -> SessionRecord:
    """Frames at 25 fps from 1 s after the start, each `arrival_delay` * its pts late; voice every 20 ms, lagging
    the picture by `audio_lag` * its pts."""
    record = SessionRecord(0, "bot", started=0.0)
    for slot in range(round(seconds * FPS)):
        pts = slot / FPS
        record.add_frame(1.0 + pts * (1 + arrival_delay), pts)
    for number in range(round(seconds * 50)):
        pts = number / 50
        record.audio.append((1.0 + pts * (1 + audio_lag), pts))
    record.hung_up = 1.0 + seconds
    return record


def test_a_steady_session_has_no_late_frame_no_stall_and_no_drift() -> None:
    record = session()
    assert sum(record.late) == 0 and record.skipped() == 0
    assert record.stalls(record.hung_up or 0.0) == []
    assert record.drift() == pytest.approx(0.0, abs=1e-3)


def test_frames_falling_behind_their_timestamps_are_late_past_the_tolerance() -> None:
    record = session(arrival_delay=0.02)  # 20 ms more behind every second
    late_from = LATE_TOLERANCE / 0.02
    assert sum(record.late) == pytest.approx((20.0 - late_from) * FPS, abs=2)


def test_a_picture_drifting_from_its_voice_is_measured() -> None:
    record = session(audio_lag=0.01, seconds=30.0)  # the voice 10 ms more behind every second
    assert record.drift() == pytest.approx(-0.01 * 25, abs=0.02)


def test_a_gap_longer_than_the_stall_limit_is_a_stall_and_missing_slots_are_skipped() -> None:
    record = session()
    gap = round((STALL + 1) * FPS)
    del record.video[100 : 100 + gap], record.late[100 : 100 + gap]
    assert record.stalls(record.hung_up or 0.0) == [pytest.approx((gap + 1) / FPS)]
    assert record.skipped() == gap


def test_a_session_that_never_shows_a_frame_stalls_once_the_first_frame_is_overdue() -> None:
    record = SessionRecord(0, "webrtc", started=0.0)
    assert record.stalls(FIRST_FRAME_WAIT - 1) == []
    assert record.stalls(FIRST_FRAME_WAIT + 1) == [pytest.approx(FIRST_FRAME_WAIT + 1)]


def test_frames_that_stop_before_the_hang_up_are_a_stall() -> None:
    record = session(seconds=10.0)
    record.hung_up = 11.0 + STALL + 1
    assert record.stalls(record.hung_up) == [pytest.approx(STALL + 1 + 1 / FPS)]


def test_a_slot_refused_for_want_of_room_waits_as_told_and_any_other_failure_does_not() -> None:
    headers = email.message.Message()
    headers["Retry-After"] = "7"
    full = urllib.error.HTTPError("http://127.0.0.1/api/sessions", 503, "Service Unavailable", headers, None)
    assert refusal_wait(full) == 7.0
    assert refusal_wait(BotRefused("no_headroom", "full", CloseCode.SERVER_FULL)) == REFUSED_RETRY
    bad = urllib.error.HTTPError("http://127.0.0.1/api/sessions", 400, "Bad Request", email.message.Message(), None)
    assert refusal_wait(bad) is None
    assert refusal_wait(BotRefused("invalid_start", "bad", CloseCode.INVALID_START)) is None
    assert refusal_wait(RuntimeError("the server ended the session")) is None
