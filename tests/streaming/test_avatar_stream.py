from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest

from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import VirtualClock
from streaming.frames import SAMPLE_RATE, AudioChunk, AudioWindow, IdlePose, RgbImage
from streaming.idle import IdleMotion
from streaming.renderer import WindowSpec
from streaming.windowing import frame_start_sample
from tests.streaming.fake_renderer import FakeAvatar, FakeRenderer, decode
from tests.streaming.signals import silence, tone
from tests.streaming.stream_harness import StreamHarness, frames_touching

FPS = 24.0
HANGOVER = 0.24  # StreamSettings.speech_end_ms


def assert_frames_tell_the_truth(harness: StreamHarness) -> None:
    """Every image is the one the renderer drew for that index, mouth open exactly on speaking frames."""
    for frame in harness.frames:
        assert decode(frame.image) == (frame.index % 65536, frame.speaking), frame.index
        assert frame.pts == pytest.approx(frame.index / FPS)


async def test_every_frame_is_drawn_once_in_order_across_speech_and_idle_transitions() -> None:
    script = [silence(0.5), tone(1.0), silence(0.6), tone(0.5), silence(0.5)]
    async with StreamHarness() as harness:
        for part in script:
            await harness.play(part)
        await harness.finish()

    total = frames_touching(0.0, 3.1)
    assert harness.indices == total
    assert_frames_tell_the_truth(harness)
    # The gate opens at each tone's first sample (back-dated) and holds for the hangover after its last.
    expected = frames_touching(0.5, 1.5 + HANGOVER) + frames_touching(2.1, 2.6 + HANGOVER)
    assert [frame.index for frame in harness.frames if frame.speaking] == expected

    windows = [call for call in harness.renderer.calls if call.kind == "window"]
    drawn_in_windows = [i for call in windows for i in range(call.first_frame, call.first_frame + call.frame_count)]
    assert drawn_in_windows == expected
    assert all(1 <= call.frame_count <= 4 for call in windows)
    idle = [call for call in harness.renderer.calls if call.kind == "idle"]
    assert sum(call.frame_count for call in idle) == len(total) - len(expected)
    assert harness.stream.stats.frames_skipped == 0


async def test_an_utterance_opens_with_a_short_window_and_its_last_window_says_so() -> None:
    renderer = FakeRenderer(window=WindowSpec(frames=4, context=2, lookahead=0.04, onset_frames=2))
    async with StreamHarness(renderer=renderer) as harness:
        for part in [silence(0.5), tone(1.0), silence(0.6), tone(0.5), silence(0.5)]:
            await harness.play(part)
        await harness.finish()

    windows = [call.window for call in renderer.calls if call.window is not None]
    utterances: list[list[AudioWindow]] = [[]]
    for window in windows:
        utterances[-1].append(window)
        if window.ends_speech:
            utterances.append([])
    assert utterances.pop() == []
    assert len(utterances) == 2
    for utterance in utterances:
        assert utterance[0].frame_count == 2
        assert all(window.frame_count == 4 for window in utterance[1:-1])
        assert [window.ends_speech for window in utterance] == [False] * (len(utterance) - 1) + [True]
        ends = utterance[-1].first_frame + utterance[-1].frame_count
        assert all(call.kind == "idle" for call in renderer.calls if call.first_frame == ends)


async def test_windows_carry_the_audio_and_poses_of_their_frames() -> None:
    audio = np.concatenate([silence(0.3), tone(0.8, frequency=310.0), silence(0.4)])
    async with StreamHarness() as harness:
        await harness.play(audio)
        await harness.finish()

    assert harness.stream.stats.silence_filled == 0.0  # audio came in time: the timeline is exactly what was sent
    motion = IdleMotion(seed=0)
    spec = harness.renderer.window
    windows = [call.window for call in harness.renderer.calls if call.window is not None]
    assert windows
    for window in windows:
        start = frame_start_sample(window.first_frame - spec.context, FPS)
        end = frame_start_sample(window.first_frame + window.frame_count, FPS) + round(spec.lookahead * SAMPLE_RATE)
        expected = np.zeros(end - start, dtype=np.float32)
        lo, hi = max(start, 0), min(end, len(audio))
        expected[lo - start : hi - start] = audio[lo:hi]
        np.testing.assert_array_equal(window.samples, expected)
        assert window.start_time == start / SAMPLE_RATE
        assert window.poses == tuple(
            motion.pose(index, FPS) for index in range(window.first_frame, window.first_frame + window.frame_count)
        )


async def test_idle_frames_keep_coming_when_no_audio_arrives_at_all() -> None:
    async with StreamHarness() as harness:
        await harness.wait(2.0)
        # Audio overdue by more than the jitter allowance is silence: the frames ending by 2.0 - 0.06 s are drawn.
        assert harness.indices == list(range(math.floor((2.0 - 0.06) * FPS)))
        assert not any(frame.speaking for frame in harness.frames)
        assert_frames_tell_the_truth(harness)

        # When audio does come, its first chunk (arriving at 2.02 s) lands where the silence has got to by then
        # (1.96 s), and none of it is lost.
        await harness.play(tone(0.5))
        await harness.finish()
    speaking = [frame.index for frame in harness.frames if frame.speaking]
    assert speaking == frames_touching(1.96, 1.96 + 0.5)  # the input ends with the tone: no hangover after it
    assert harness.indices == list(range(len(harness.indices)))


async def test_frames_arrive_within_the_pipeline_delay_of_their_media_time() -> None:
    script = [silence(0.4), tone(0.7), silence(0.5)]
    async with StreamHarness() as harness:
        for part in script:
            await harness.play(part)
        await harness.wait(1.0)  # then a stretch with no audio at all
        lateness = [arrival - frame.pts for frame, arrival in zip(harness.frames, harness.arrivals, strict=True)]
        delay = harness.stream.pipeline_delay
    assert len(lateness) >= 50
    # Chunks arrive whole, so a frame can wait one chunk longer than the pipeline itself makes it.
    assert max(lateness) <= delay + 0.02 + 1e-9
    assert min(lateness) >= 1 / FPS - 1e-9  # and no frame comes before its audio has been heard


async def test_a_producer_far_ahead_of_the_clock_is_not_rendered_more_than_max_render_ahead() -> None:
    settings = StreamSettings(max_render_ahead=0.5)
    async with StreamHarness(settings) as harness:
        harness.push(tone(2.5))  # a bot sends a whole utterance at once
        await harness.settle()
        window_span = harness.renderer.window.frames / FPS
        assert max(frame.pts for frame in harness.frames) <= 0.5 + window_span
        await harness.clock.advance(1.0)
        await harness.settle()
        assert max(frame.pts for frame in harness.frames) <= 1.5 + window_span
        await harness.clock.advance(1.0)  # flushing does not lift the limit: let the clock reach the end
        await harness.finish()
    assert harness.indices == frames_touching(0.0, 2.5)


async def test_audio_lands_where_the_timeline_has_got_to_whatever_its_pts_say() -> None:
    async with StreamHarness() as harness:
        await harness.play(np.concatenate([silence(0.3), tone(0.2)]))
        jumped = AudioChunk(samples=tone(0.1), pts=harness.pts + 5.0)  # a sender clock jump: not trusted
        assert harness.stream.push_audio(jumped) == pytest.approx(0.5)
        await harness.wait(1.0)  # the clock is now at 1.5 s, and the timeline filled with silence up to 1.44 s
        rewound = AudioChunk(samples=tone(0.1), pts=0.0)
        assert harness.stream.push_audio(rewound) == pytest.approx(1.44)
        await harness.wait(1.0)
        await harness.finish()
    speaking = [frame.index for frame in harness.frames if frame.speaking]
    assert speaking == frames_touching(0.3, 0.6 + HANGOVER) + frames_touching(1.44, 1.54 + HANGOVER)


async def test_a_renderer_that_cannot_keep_up_does_not_make_the_stream_grow_without_bound() -> None:
    settings = StreamSettings(max_queued_audio=1.0)
    async with StreamHarness(settings) as harness:
        harness.renderer.gate.clear()  # the renderer stalls
        for second in range(6):
            for chunk_index in range(50):
                await harness.clock.advance(0.02)
                harness.push(tone(0.02, start=second + chunk_index * 0.02) if second % 2 else silence(0.02))
                assert harness.stream.queued_audio <= 1.0 + 0.02
        assert harness.stream.stats.frames_skipped > 0
        harness.renderer.gate.set()
        await harness.finish()
    stats = harness.stream.stats
    assert stats.audio_dropped > 4.0
    # Indices only ever go up, and the frames skipped are exactly the gaps.
    assert all(b > a for a, b in itertools.pairwise(harness.indices))
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(harness.indices))
    assert gaps == stats.frames_skipped
    assert harness.indices[-1] == frames_touching(0.0, 6.0)[-1]
    assert_frames_tell_the_truth(harness)


async def test_a_consumer_that_stops_taking_frames_bounds_the_frames_held() -> None:
    settings = StreamSettings(max_queued_frames=10, max_idle_batch=4, max_queued_audio=1.0)
    async with StreamHarness(settings, consume=False) as harness:
        for _ in range(150):
            await harness.clock.advance(0.02)
            harness.push(silence(0.02))
        await harness.clock.advance(0.0)
        drawn = sum(call.frame_count for call in harness.renderer.calls)
        assert drawn <= 10 + 4
        assert harness.stream.queued_frames <= 10
        assert harness.stream.stats.frames_skipped > 0
        first = await harness.take()
        assert first.index == 0


async def test_renderer_errors_reach_the_consumer() -> None:
    class ShortRenderer(FakeRenderer):
        def render_idle(self, avatar: FakeAvatar, poses: Sequence[IdlePose]) -> list[RgbImage]:
            return super().render_idle(avatar, poses)[:-1]

    clock = VirtualClock()
    stream = AvatarStream(ShortRenderer(), FakeAvatar(), StreamSettings(), clock)
    await stream.start()
    stream.push_audio(AudioChunk(samples=silence(1.0), pts=0.0))
    await stream.flush()
    with pytest.raises(RuntimeError, match="renderer 'fake' returned 11 frames for 12 requested"):
        async for _ in stream:
            pass
    await stream.aclose()


async def test_misuse_is_refused_with_clear_messages() -> None:
    stream = AvatarStream(FakeRenderer(), FakeAvatar(), StreamSettings(), VirtualClock())
    with pytest.raises(RuntimeError, match="start"):
        stream.push_audio(AudioChunk(samples=silence(0.02), pts=0.0))
    await stream.start()
    with pytest.raises(ValueError, match="float32"):
        stream.push_audio(AudioChunk(samples=np.zeros(320, dtype=np.int16), pts=0.0))
    with pytest.raises(RuntimeError, match="already started"):
        await stream.start()
    await stream.flush()
    with pytest.raises(RuntimeError, match="after flush"):
        stream.push_audio(AudioChunk(samples=silence(0.02), pts=0.0))
    await stream.aclose()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"fps": 0.0}, "fps"),
        ({"jitter_allowance": -0.1}, "negative"),
        ({"max_queued_audio": 0.05}, "max_queued_audio"),
        ({"max_queued_frames": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamSettings(**arguments)  # type: ignore[arg-type]


async def test_settings_override_the_renderer_fps_and_window() -> None:
    window = WindowSpec(frames=2, context=0, lookahead=0.0)
    async with StreamHarness(StreamSettings(fps=FPS, window=window)) as harness:
        await harness.play(tone(0.5))
        await harness.finish()
    windows = [call for call in harness.renderer.calls if call.kind == "window"]
    assert max(call.frame_count for call in windows) == 2
    assert harness.stream.window_spec == window


async def test_aclose_stops_the_worker_and_ends_iteration() -> None:
    async with StreamHarness() as harness:
        await harness.wait(0.5)
        await harness.stream.aclose()
        assert harness.clock.sleepers == 0
        with pytest.raises(StopAsyncIteration):
            await harness.take()
