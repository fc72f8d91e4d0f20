"""The session's clock and its outgoing tracks on a virtual clock: when each frame and each echoed chunk leaves,
and how it is stamped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from server.playout import Playout, Tick
from server.tracks import VIDEO_CLOCK_RATE, AvatarVideoTrack, EchoAudioTrack
from streaming.clock import VirtualClock
from streaming.frames import SAMPLE_RATE, AudioChunk, VideoFrame
from streaming.pacer import FramePacer

FPS = 25.0
DELAY = 0.1
T = TypeVar("T")


def frame(index: int) -> VideoFrame:
    return VideoFrame(image=np.full((16, 16, 3), index % 256, dtype=np.uint8), index=index, pts=index / FPS)


async def receive_at(clock: VirtualClock, receiver: Awaitable[T], until: float) -> tuple[float, T]:
    """Start `receiver`, move the clock to `until`, and return when the result came and the result."""
    received = asyncio.ensure_future(receiver)
    await clock.advance(0)
    while not received.done() and clock.next_deadline is not None and clock.next_deadline <= until:
        await clock.advance_to(clock.next_deadline)
    assert received.done(), f"nothing was received by t={until}"
    return clock.now(), received.result()


async def sent_frame(track: AvatarVideoTrack, tick: Tick) -> av.VideoFrame:
    track.show(tick)
    output = await track.recv()
    assert isinstance(output, av.VideoFrame)
    return output


async def test_ticks_fall_on_frame_boundaries_and_frames_are_stamped_with_their_media_time() -> None:
    clock = VirtualClock(start=10.0)
    pacer = FramePacer(clock, FPS, DELAY)
    pacer.anchor(0.0, 10.0)
    playout = Playout(pacer)
    track = AvatarVideoTrack()
    for index in range(5):
        pacer.push(frame(index))
    # The clock is first read mid-way between two frames: the first tick waits for the next boundary.
    await clock.advance_to(10.0 + DELAY + 1.5 / FPS)

    times, stamps, shown = [], [], []
    for _ in range(3):
        ticked_at, tick = await receive_at(clock, playout.next_tick(), until=11.0)
        output = await sent_frame(track, tick)
        times.append(ticked_at)
        stamps.append(output.pts)
        shown.append((tick.frame.index, tick.slot, tick.repeated))
        assert output.time_base == pytest.approx(1 / VIDEO_CLOCK_RATE)

    assert times == pytest.approx([10.0 + DELAY + k / FPS for k in (2, 3, 4)])
    assert stamps == [round(k / FPS * VIDEO_CLOCK_RATE) for k in (2, 3, 4)]
    assert shown == [(2, 2, False), (3, 3, False), (4, 4, False)]


async def test_repeated_and_late_frames_fill_later_slots_and_are_stamped_with_them() -> None:
    clock = VirtualClock()
    pacer = FramePacer(clock, FPS, DELAY)
    pacer.anchor(0.0, 0.0)
    playout = Playout(pacer)
    track = AvatarVideoTrack()
    pacer.push(frame(0))
    _, on_time = await receive_at(clock, playout.next_tick(), until=1.0)
    _, stand_in = await receive_at(clock, playout.next_tick(), until=1.0)  # frame 1 is late: frame 0 again
    pacer.push(frame(1))
    _, late = await receive_at(clock, playout.next_tick(), until=1.0)
    ticks = [on_time, stand_in, late]
    stamps = [(await sent_frame(track, tick)).pts for tick in ticks]
    assert stamps == [round(slot / FPS * VIDEO_CLOCK_RATE) for slot in (0, 1, 2)]
    assert [(tick.frame.index, tick.slot, tick.repeated) for tick in ticks] == [
        (0, 0, False),
        (0, 1, True),
        (1, 2, False),
    ]


async def test_an_encoder_that_falls_behind_gets_the_newest_tick() -> None:
    track = AvatarVideoTrack()
    for slot in range(3):
        track.show(Tick(frame(slot), slot, slot / FPS, repeated=False))
    output = await track.recv()
    assert output.pts == round(2 / FPS * VIDEO_CLOCK_RATE)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    assert not waiting.done(), "a tick is sent once"
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting


def chunk(level: float, duration: float = 0.02) -> AudioChunk:
    return AudioChunk(samples=np.full(round(duration * SAMPLE_RATE), level, dtype=np.float32), pts=0.0)


async def sent_voice(clock: VirtualClock, track: EchoAudioTrack, count: int) -> list[tuple[float, av.AudioFrame]]:
    frames = []
    for _ in range(count):
        sent_at, frame = await receive_at(clock, track.recv(), until=clock.now() + 1.0)
        assert isinstance(frame, av.AudioFrame)
        frames.append((sent_at, frame))
    return frames


def first_sample(frame: av.AudioFrame) -> int:
    return int(frame.to_ndarray()[0, 0])


async def test_the_voice_leaves_as_a_continuous_20_ms_stream_each_frame_at_its_send_time() -> None:
    clock = VirtualClock(start=5.0)
    track = EchoAudioTrack(clock, send_time=lambda media_time: 5.0 + media_time)
    track.push(0.04, chunk(0.5))
    track.push(0.10, chunk(-0.25, duration=0.04))  # a gap before it: silence fills it

    frames = await sent_voice(clock, track, 7)

    assert [at for at, _ in frames] == pytest.approx([5.0 + 0.02 * k for k in range(7)])
    assert [frame.pts for _, frame in frames] == [320 * k for k in range(7)], "the timestamps are the timeline"
    _, first = frames[0]
    assert (first.format.name, first.layout.name, first.sample_rate, first.samples) == ("s16", "mono", SAMPLE_RATE, 320)
    levels = [first_sample(frame) for _, frame in frames]
    assert levels == [0, 0, round(0.5 * 32767), 0, 0, round(-0.25 * 32767), round(-0.25 * 32767)]


async def test_a_bots_long_chunk_is_cut_into_20_ms_frames() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: media_time)
    track.push(0.0, chunk(0.25, duration=1.0))  # a bot's second of speech in one message
    frames = await sent_voice(clock, track, 50)
    assert all(frame.samples == 320 and first_sample(frame) == round(0.25 * 32767) for _, frame in frames)


async def test_a_peer_that_falls_behind_skips_what_it_missed_and_an_interrupt_clears_the_voice() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: media_time, max_late=0.2)
    track.push(0.0, chunk(0.1, duration=2.0))
    await sent_voice(clock, track, 1)
    await clock.advance_to(1.0)  # the sender stalled for a second
    ((_, resumed),) = await sent_voice(clock, track, 1)
    assert resumed.pts == SAMPLE_RATE, "what it missed is skipped: the voice goes on from what is due"
    track.clear()
    frames = await sent_voice(clock, track, 3)
    assert not any(frame.to_ndarray().any() for _, frame in frames)


async def test_the_voice_held_is_bounded() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: media_time, max_buffered=0.1)
    for number in range(10):
        track.push(number * 0.02, chunk(0.1 + 0.05 * number))
    frames = await sent_voice(clock, track, 10)
    assert [first_sample(frame) > 0 for _, frame in frames] == [False] * 5 + [True] * 5, "the oldest was dropped"


async def test_a_stopped_voice_track_ends_its_receiver() -> None:
    clock = VirtualClock()
    track = EchoAudioTrack(clock, send_time=lambda media_time: media_time + 1.0)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    await clock.advance(1.0)
    with pytest.raises(MediaStreamError):
        await waiting
    with pytest.raises(MediaStreamError):
        await track.recv()
