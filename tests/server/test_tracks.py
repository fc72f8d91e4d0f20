"""The outgoing tracks on a virtual clock: when each frame and each echoed chunk leaves, and how it is stamped."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from server.tracks import VIDEO_CLOCK_RATE, AvatarVideoTrack, EchoAudioTrack
from streaming.clock import VirtualClock
from streaming.frames import SAMPLE_RATE, AudioChunk, VideoFrame
from streaming.pacer import FramePacer

FPS = 25.0
DELAY = 0.1


def frame(index: int) -> VideoFrame:
    return VideoFrame(image=np.full((16, 16, 3), index % 256, dtype=np.uint8), index=index, pts=index / FPS)


async def receive_at(
    clock: VirtualClock, track: AvatarVideoTrack | EchoAudioTrack, until: float
) -> tuple[float, object]:
    """Start a `recv()`, move the clock to `until`, and return when the result came and the result."""
    received = asyncio.create_task(track.recv())
    await clock.advance(0)
    while not received.done() and clock.next_deadline is not None and clock.next_deadline <= until:
        await clock.advance_to(clock.next_deadline)
    assert received.done(), f"nothing was received by t={until}"
    return clock.now(), received.result()


async def test_video_frames_leave_on_frame_boundaries_stamped_with_their_media_time() -> None:
    clock = VirtualClock(start=10.0)
    pacer = FramePacer(clock, FPS, DELAY)
    pacer.anchor(0.0, 10.0)
    sent: list[tuple[int, bool]] = []
    track = AvatarVideoTrack(pacer, lambda shown, repeated: sent.append((shown.index, repeated)))
    for index in range(5):
        pacer.push(frame(index))
    # The encoder first asks mid-way between two frames: it waits for the next boundary.
    await clock.advance_to(10.0 + DELAY + 1.5 / FPS)

    times, stamps = [], []
    for _ in range(3):
        sent_at, output = await receive_at(clock, track, until=11.0)
        assert isinstance(output, av.VideoFrame)
        times.append(sent_at)
        stamps.append(output.pts)
        assert output.time_base == pytest.approx(1 / VIDEO_CLOCK_RATE)

    assert times == pytest.approx([10.0 + DELAY + k / FPS for k in (2, 3, 4)])
    assert stamps == [round(k / FPS * VIDEO_CLOCK_RATE) for k in (2, 3, 4)]
    assert sent == [(2, False), (3, False), (4, False)]


async def test_repeated_and_late_frames_are_stamped_with_the_slot_they_fill() -> None:
    clock = VirtualClock()
    pacer = FramePacer(clock, FPS, DELAY)
    pacer.anchor(0.0, 0.0)
    sent: list[tuple[int, bool]] = []
    track = AvatarVideoTrack(pacer, lambda shown, repeated: sent.append((shown.index, repeated)))
    pacer.push(frame(0))
    _, on_time = await receive_at(clock, track, until=1.0)
    _, stand_in = await receive_at(clock, track, until=1.0)  # frame 1 is not rendered in time: frame 0 again
    pacer.push(frame(1))
    _, late = await receive_at(clock, track, until=1.0)
    stamps = [output.pts for output in (on_time, stand_in, late) if isinstance(output, av.VideoFrame)]
    assert stamps == [round(slot / FPS * VIDEO_CLOCK_RATE) for slot in (0, 1, 2)]
    assert sent == [(0, False), (0, True), (1, False)]


def chunk(pts: float, level: float, duration: float = 0.02) -> AudioChunk:
    return AudioChunk(samples=np.full(round(duration * SAMPLE_RATE), level, dtype=np.float32), pts=pts)


async def test_echoed_audio_leaves_at_its_send_time_as_16_bit_mono() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: 5.0 + media_time)
    track.push(0.0, chunk(0.0, 0.5))
    track.push(0.02, chunk(0.02, -0.25))

    first_at, first = await receive_at(clock, track, until=6.0)
    second_at, second = await receive_at(clock, track, until=6.0)

    assert (first_at, second_at) == pytest.approx((5.0, 5.02))
    assert isinstance(first, av.AudioFrame) and isinstance(second, av.AudioFrame)
    assert (first.format.name, first.layout.name, first.sample_rate) == ("s16", "mono", SAMPLE_RATE)
    assert (first.pts, second.pts) == (0, 320)
    assert first.to_ndarray()[0, 0] == round(0.5 * 32767)
    assert second.to_ndarray()[0, 0] == round(-0.25 * 32767)


async def test_the_echo_keeps_only_the_newest_audio_when_nobody_sends_it() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: media_time, max_buffered=0.1)
    for number in range(10):
        track.push(number * 0.02, chunk(number * 0.02, 0.1))
    _, oldest_kept = await receive_at(clock, track, until=1.0)
    assert isinstance(oldest_kept, av.AudioFrame)
    assert oldest_kept.pts == round(0.1 * SAMPLE_RATE), "the first five chunks (0.1 s) were dropped"


async def test_a_stopped_echo_track_ends_a_waiting_receiver() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: media_time)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting
