"""One session's pipeline from audio in to rendered frames out: VAD gate, windows, idle motion, a renderer.

The session has one timeline, in 16 kHz samples from `start()`; frame `k` depicts the audio from `k / fps` to
`(k + 1) / fps` of it, and `VideoFrame.pts` is that media time. Audio is appended where the timeline has got
to (the chunks' own `pts` are not consulted: senders' clocks jump, stall and drift); when audio is overdue by
more than `jitter_allowance` (a bot between utterances, a muted microphone, a stalled network) the timeline
carries on with silence, so idle frames keep coming.

Every frame is drawn exactly once and handed out in index order, by the renderer's `RenderSession` for this
stream (opened at `start()`, closed at `aclose()`): while the gate is open, by `render_window` on windows of up to
`window.frames` frames (the first window of an utterance has `window.first_window_frames`, so the face moves early;
the last is marked `ends_speech`); otherwise by `render_idle`. Both get their poses from the same `IdleMotion`, so
the head and eyes do not jump at a transition. The session runs in a worker thread; an interruption resets it.

Bounds: the output queue holds `max_queued_frames`; frames are not rendered more than `max_render_ahead` seconds
ahead of the clock; and when more than `max_queued_audio` seconds of audio wait to be drawn (the renderer cannot
keep up, or a producer sent audio far faster than real time) the oldest is dropped and its frames are skipped:
the only gaps in the frame indices, counted in `stats.frames_skipped`.

Under overload a `RenderGovernor` may ask for a frame stride: each new render job then draws only the frames whose
index is a multiple of it, and the frames between show the last one drawn (`stats.frames_held`), so every index
still comes out, on time (see `streaming.render_governor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic

import numpy as np

from streaming.clock import Clock, MonotonicClock
from streaming.frames import (
    SAMPLE_RATE,
    AudioChunk,
    AudioWindow,
    FloatAudio,
    IdlePose,
    RgbImage,
    VideoFrame,
    strided_frames,
)
from streaming.idle import IdleMotion
from streaming.latency_budget import LatencyBudget
from streaming.render_governor import RenderGovernor
from streaming.renderer import AvatarT, Renderer, RenderSession, WindowSpec
from streaming.vad import SpeechClassifier, VadDecision, VadGate
from streaming.windowing import WindowCutter, frame_start_sample, frames_starting_before


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Per-session tuning. `fps` and `window` default to the renderer's own."""

    fps: float | None = None
    window: WindowSpec | None = None
    vad_aggressiveness: int = 2
    vad_frame_ms: int = 20
    vad_min_level_dbfs: float | None = -50.0
    """Frames quieter than this never count as voiced; None disables the floor."""
    speech_start_ms: float = 60.0
    """Voiced audio must last this long before the gate opens (the opening is then back-dated)."""
    speech_end_ms: float = 240.0
    """The gate stays open this long after the last voiced frame."""
    jitter_allowance: float = 0.06
    """Audio later than this (seconds) behind the clock is taken as silence."""
    max_queued_audio: float = 3.0
    """Seconds of audio waiting to be drawn before the oldest is dropped."""
    max_render_ahead: float = 0.5
    """Frames are not rendered earlier than this many seconds before their media time comes round."""
    max_queued_frames: int = 48
    """Rendered frames waiting for the consumer before rendering pauses."""
    max_idle_batch: int = 12
    """Most idle frames drawn by one `render_idle` call."""
    idle_seed: int = 0

    def __post_init__(self) -> None:
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.jitter_allowance < 0 or self.max_render_ahead < 0:
            raise ValueError("jitter_allowance and max_render_ahead must not be negative")
        if self.max_queued_audio <= self.jitter_allowance:
            raise ValueError(
                f"max_queued_audio ({self.max_queued_audio} s) must exceed jitter_allowance ({self.jitter_allowance} s)"
            )
        if self.max_queued_frames < 1 or self.max_idle_batch < 1:
            raise ValueError("max_queued_frames and max_idle_batch must be at least 1")


@dataclass(slots=True)
class StreamStats:
    """Counters over a stream's life, for metrics and tests."""

    speaking_frames: int = 0
    idle_frames: int = 0
    windows: int = 0
    frames_skipped: int = 0
    """Frames never drawn because their audio was dropped to stay within `max_queued_audio`."""
    frames_discarded: int = 0
    """Frames drawn but thrown away by an interrupt."""
    silence_filled: float = 0.0
    """Seconds of silence put on the timeline for overdue audio."""
    audio_dropped: float = 0.0
    interrupts: int = 0
    frames_held: int = 0
    """Frames not drawn under a frame stride, showing the last frame drawn instead."""


@dataclass(frozen=True, slots=True)
class _RenderJob:
    first_frame: int
    poses: tuple[IdlePose, ...]
    window: AudioWindow | None
    """None: idle frames."""
    drawn: range
    """The frame indices the renderer draws; the others show the last frame drawn."""


@dataclass(frozen=True, slots=True)
class _Wait:
    deadline: float
    """Clock time by which the clock alone (silence filling in) may have made progress possible; new input may
    make it possible sooner."""


@dataclass(frozen=True, slots=True)
class _Done:
    """Input ended and every frame has been drawn."""


class AvatarStream(Generic[AvatarT]):
    """Drives one renderer for one session. Use: `await start()`, `push_audio()` as audio arrives, `async for`
    the frames (unpaced: feed them to a `FramePacer`), then `flush()` or `interrupt()`, and `aclose()`."""

    def __init__(
        self,
        renderer: Renderer[AvatarT],
        avatar: AvatarT,
        settings: StreamSettings | None = None,
        clock: Clock | None = None,
        *,
        classifier: SpeechClassifier | None = None,
        governor: RenderGovernor | None = None,
    ) -> None:
        """`governor`: where the stream reads the frame stride to draw new jobs at (none: always full rate)."""
        self.settings = settings if settings is not None else StreamSettings()
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.fps = self.settings.fps if self.settings.fps is not None else renderer.fps
        self.window_spec: WindowSpec = self.settings.window if self.settings.window is not None else renderer.window
        self.stats = StreamStats()
        self._renderer = renderer
        self._avatar = avatar
        self._motion = IdleMotion(self.settings.idle_seed)
        self._cutter = WindowCutter(self.window_spec, self.fps, self._pose)
        self._vad = VadGate(
            aggressiveness=self.settings.vad_aggressiveness,
            frame_ms=self.settings.vad_frame_ms,
            start_ms=self.settings.speech_start_ms,
            end_ms=self.settings.speech_end_ms,
            min_level_dbfs=self.settings.vad_min_level_dbfs,
            classifier=classifier,
        )
        self._decisions: deque[tuple[int, int, bool]] = deque()  # (first sample, end sample, speech)
        self._decided = 0  # timeline sample up to which the gate has decided
        self._gate_origin = 0  # timeline sample where the gate's frames start
        self._allowance = round(self.settings.jitter_allowance * SAMPLE_RATE)
        self._max_backlog = round(self.settings.max_queued_audio * SAMPLE_RATE)
        self._origin: float | None = None
        self._input_ended = False
        self._generation = 0  # bumped by interrupt(): renders begun before it are void
        self._output: deque[VideoFrame] = deque()
        self._next_yield = 0  # index the consumer is due next; an interrupt resumes drawing here
        self._wake = asyncio.Event()  # for the worker: input, interrupt, or room in the output queue
        self._frame_ready = asyncio.Event()  # for the consumer
        self._finished = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: RenderSession | None = None
        self._in_flight: asyncio.Future[list[RgbImage]] | None = None  # the render running in a worker thread
        self._last_yielded: VideoFrame | None = None
        self._pending_reset: tuple[int, RgbImage | None] | None = None  # for the session, once no render runs
        self._speaking = False  # whether the last frame planned was drawn as speech
        self._governor = governor
        self._held_image: RgbImage | None = None  # the last frame queued: what a frame left out under a stride shows
        self.degraded = False
        """Whether the last job was drawn at a frame stride (a lower frame rate)."""

    @property
    def origin(self) -> float:
        """Clock time of media time 0; anchor a pacer here: `pacer.anchor(0.0, stream.origin)`."""
        if self._origin is None:
            raise RuntimeError("the stream has not been started")
        return self._origin

    @property
    def pipeline_delay(self) -> float:
        """Worst case, in seconds, from a moment of audio coming round on the clock to every input for its frame
        being available to the renderer. Excludes render and transport time (see `latency_budget`)."""
        return self.latency_budget(render=0.0, encode=0.0).input_delay

    def latency_budget(self, render: float, encode: float) -> LatencyBudget:
        """The playout delay this stream needs, given the time to render a window and to encode a frame. The gate
        part is the longest of holding a speech onset and deciding an idle frame."""
        vad_frame = self.settings.vad_frame_ms / 1000
        onset_hold = max(1, math.ceil(self.settings.speech_start_ms / self.settings.vad_frame_ms)) * vad_frame
        return LatencyBudget(
            jitter=self.settings.jitter_allowance,
            gate=max(onset_hold + vad_frame, 1 / self.fps + vad_frame),
            window=self.window_spec.frames / self.fps,
            lookahead=self.window_spec.lookahead,
            render=render,
            encode=encode,
        )

    @property
    def queued_audio(self) -> float:
        """Seconds of audio on the timeline not yet drawn."""
        waiting = self._cutter.timeline.end - frame_start_sample(self._cutter.next_frame, self.fps)
        return max(0, waiting) / SAMPLE_RATE

    @property
    def queued_frames(self) -> int:
        """Frames rendered and waiting for the consumer."""
        return len(self._output)

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the stream was already started")
        self._session = self._renderer.open_session(self._avatar)
        self._origin = self.clock.now()
        self._task = asyncio.create_task(self._run(), name="avatar-stream")

    def push_audio(self, chunk: AudioChunk) -> float:
        """Add 16 kHz mono float32 audio. Never blocks. Returns the media time at which the chunk landed (to play
        it back in step with its frames): where the timeline had got to, after any silence for overdue audio."""
        if self._origin is None:
            raise RuntimeError("start() the stream before pushing audio")
        if self._input_ended:
            raise RuntimeError("audio pushed after flush()")
        samples = chunk.samples
        if samples.ndim != 1 or samples.dtype != np.float32:
            raise ValueError(f"audio must be 1-D float32 at {SAMPLE_RATE} Hz, got {samples.dtype} {samples.shape}")
        self._fill_overdue_silence()
        landed = self._cutter.timeline.end / SAMPLE_RATE
        self._append(samples)
        self._wake.set()
        return landed

    async def flush(self) -> None:
        """End of input: the frames for the audio already pushed are drawn, then iteration ends. Returns at once;
        `async for` over the stream to receive the rest."""
        if self._input_ended:
            return
        self._input_ended = True
        self._record(self._vad.flush())
        self._cutter.end_audio()
        self._wake.set()

    def interrupt(self) -> None:
        """Drop all queued audio, windows and undelivered frames, and go back to idle at once: the next frames
        the consumer receives are idle, closed-mouth frames, continuing from the next index it is due."""
        self._generation += 1
        self.stats.interrupts += 1
        self.stats.frames_discarded += len(self._output)
        self._output.clear()
        resume = self._next_yield
        self._held_image = None  # back to rest at once: the first frame after an interrupt is drawn, never held
        self._speaking = False
        if self._session is not None:
            self._session.cancel()
            self._pending_reset = (resume, self._last_yielded.image if self._last_yielded is not None else None)
        self._cutter.restart(resume)
        resume_sample = frame_start_sample(resume, self.fps)
        self._vad.reset(start_time=resume_sample / SAMPLE_RATE)
        self._decisions.clear()
        self._decided = resume_sample
        self._gate_origin = resume_sample
        if self._input_ended:
            self._cutter.end_audio()
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the worker, wait for it and for a render it left running, and close the render session; iteration
        ends."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            if self._in_flight is not None and not self._in_flight.done():
                # A worker thread cannot be cancelled: cut its render short, then let it finish before closing.
                self._session.cancel()
                await asyncio.gather(self._in_flight, return_exceptions=True)
            self._session.close()
            self._session = None
        self._finished = True
        self._frame_ready.set()

    def __aiter__(self) -> AvatarStream[AvatarT]:
        return self

    async def __anext__(self) -> VideoFrame:
        if self._task is None:
            raise RuntimeError("start() the stream before iterating over it")
        while True:
            if self._output:
                frame = self._output.popleft()
                self._next_yield = frame.index + 1
                self._last_yielded = frame
                self._wake.set()
                return frame
            if self._error is not None:
                raise self._error
            if self._finished:
                raise StopAsyncIteration
            self._frame_ready.clear()
            await self._frame_ready.wait()

    # The worker: plan the next render from the timeline and the gate, render it off the loop, queue the frames.

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                if self._pending_reset is not None and self._session is not None:
                    # The render an interrupt overtook has returned: the session can rewind safely now.
                    self._session.reset(*self._pending_reset)
                    self._pending_reset = None
                self._fill_overdue_silence()
                step = self._plan()
                if isinstance(step, _Done):
                    return
                if isinstance(step, _Wait):
                    await self._wait(step.deadline)
                else:
                    await self._render(step)
        except Exception as error:  # handed to the consumer, which re-raises it from `__anext__`
            self._error = error
        finally:
            self._finished = True
            self._frame_ready.set()

    def _plan(self) -> _RenderJob | _Wait | _Done:
        cutter = self._cutter
        first = cutter.next_frame
        end = cutter.timeline.end
        if self._input_ended and frame_start_sample(first, self.fps) >= end:
            return _Done()
        frame_end = frame_start_sample(first + 1, self.fps)
        if not self._is_decided(frame_end):
            return self._wait_for_audio(frame_end)
        speaking = self._is_speech(first)
        if not speaking:
            batch = self.settings.max_idle_batch
        elif self._speaking:
            batch = self.window_spec.frames
        else:
            batch = self.window_spec.first_window_frames
        count = 1
        ends_speech = False
        while count < batch:
            index = first + count
            if self._input_ended and frame_start_sample(index, self.fps) >= end:
                ends_speech = True
                break
            index_end = frame_start_sample(index + 1, self.fps)
            if not self._is_decided(index_end):
                if speaking:
                    # A window is worth waiting for; idle frames go out as soon as they are known.
                    return self._wait_for_audio(index_end)
                break
            if self._is_speech(index) != speaking:
                ends_speech = True
                break
            count += 1
        if speaking and count == batch:
            ends_speech = self._ends_speech_after(first + count)
        if speaking and not cutter.can_cut(count):
            return self._wait_for_audio(cutter.audio_needed(count))
        earliest = self.origin + first / self.fps - self.settings.max_render_ahead
        if self.clock.now() < earliest:
            return _Wait(earliest)
        self._speaking = speaking
        stride = self._frame_stride(first)
        self.degraded = stride > 1
        drawn = strided_frames(first, count, stride)
        if speaking:
            window = cutter.cut(count, ends_speech=ends_speech)
            if stride > 1:
                window = dataclasses.replace(window, frame_stride=stride)
            job = _RenderJob(first_frame=first, poses=window.poses, window=window, drawn=drawn)
        else:
            poses = tuple(map(self._pose, range(first, first + count)))
            job = _RenderJob(first_frame=first, poses=poses, window=None, drawn=drawn)
            cutter.skip(count)
        self._forget_decisions_before(frame_start_sample(cutter.next_frame, self.fps))
        return job

    def _frame_stride(self, first: int) -> int:
        """The stride to draw a job from frame `first` at: the governor's, within what the renderer offers, and 1
        when the job would start on a frame left out with no frame drawn before it to show instead."""
        if self._governor is None:
            return 1
        stride = min(self._governor.frame_stride, self.window_spec.max_frame_stride)
        if first % stride and self._held_image is None:
            return 1
        return stride

    async def _render(self, job: _RenderJob) -> None:
        generation = self._generation
        images = await self._draw(job) if job.drawn else []
        if generation != self._generation:
            self.stats.frames_discarded += len(job.poses)
            return
        if len(images) != len(job.drawn):
            raise RuntimeError(
                f"renderer {self._renderer.name!r} returned {len(images)} frames for {len(job.drawn)} requested"
            )
        speaking = job.window is not None
        count = len(job.poses)
        if speaking:
            self.stats.windows += 1
            self.stats.speaking_frames += count
        else:
            self.stats.idle_frames += count
        self.stats.frames_held += count - len(images)
        drawn = dict(zip(job.drawn, images, strict=True))
        for offset in range(count):
            while len(self._output) >= self.settings.max_queued_frames:
                self._wake.clear()
                await self._wake.wait()
                if generation != self._generation:
                    self.stats.frames_discarded += count - offset
                    return
            index = job.first_frame + offset
            image = drawn.get(index, self._held_image)
            assert image is not None, "a stride never leaves out a frame with nothing drawn before it"
            self._held_image = image
            self._output.append(VideoFrame(image=image, index=index, pts=index / self.fps, speaking=speaking))
            self._frame_ready.set()

    async def _draw(self, job: _RenderJob) -> list[RgbImage]:
        """Run the job's render call in a worker thread: the frames in `job.drawn`."""
        session = self._session
        assert session is not None
        draw: Callable[[], list[RgbImage]]
        if job.window is not None:
            draw = functools.partial(session.render_window, job.window)
        else:
            poses = tuple(job.poses[index - job.first_frame] for index in job.drawn)
            draw = functools.partial(session.render_idle, job.drawn[0], poses)
        # Shielded, so that `aclose()` can wait for a render whose thread outlives the worker's cancellation.
        self._in_flight = asyncio.ensure_future(asyncio.to_thread(draw))
        return await asyncio.shield(self._in_flight)

    async def _wait(self, deadline: float) -> None:
        """Until the deadline, or until input, an interrupt or the consumer wakes the worker."""
        waiters: list[Awaitable[object]] = [self._wake.wait(), self.clock.sleep_until(deadline)]
        tasks = [asyncio.ensure_future(waiter) for waiter in waiters]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _wait_for_audio(self, sample: int) -> _Wait:
        """Wait for input, or for the clock to reach the point where filling in silence moves the gate's
        decisions up to `sample`, or at least one gate frame past the audio already held."""
        needed = max(self._gate_frame_end(sample), self._gate_frame_end(self._cutter.timeline.end + 1))
        # One sample of slack so that float rounding in `_live_sample` cannot leave the deadline just short.
        return _Wait(self.origin + (needed + self._allowance + 1) / SAMPLE_RATE)

    def _gate_frame_end(self, sample: int) -> int:
        """End of the gate frame that holds `sample`: the gate decides in whole frames from where it was reset."""
        frame = self._vad.frame_samples
        return self._gate_origin + math.ceil((sample - self._gate_origin) / frame) * frame

    # The timeline.

    def _live_sample(self) -> int:
        """The timeline sample coming round on the clock now."""
        return math.floor((self.clock.now() - self.origin) * SAMPLE_RATE)

    def _fill_overdue_silence(self) -> None:
        if self._input_ended:
            return
        self._append_silence(self._live_sample() - self._allowance - self._cutter.timeline.end)

    def _append_silence(self, count: int) -> None:
        if count > 0:
            self.stats.silence_filled += count / SAMPLE_RATE
            self._append(np.zeros(count, dtype=np.float32))

    def _append(self, samples: FloatAudio) -> None:
        self._cutter.append(samples)
        self._record(self._vad.push(samples))
        self._drop_backlog()

    def _drop_backlog(self) -> None:
        """Skip the oldest frames when more audio waits to be drawn than `max_queued_audio` allows."""
        cutter = self._cutter
        keep_from = cutter.timeline.end - self._max_backlog
        skip_from = frame_start_sample(cutter.next_frame, self.fps)
        if skip_from >= keep_from:
            return
        first_kept = frames_starting_before(keep_from, self.fps)
        self.stats.frames_skipped += first_kept - cutter.next_frame
        self.stats.audio_dropped += (frame_start_sample(first_kept, self.fps) - skip_from) / SAMPLE_RATE
        cutter.skip(first_kept - cutter.next_frame)
        self._forget_decisions_before(frame_start_sample(first_kept, self.fps))

    # The speech gate's decisions, in timeline samples.

    def _record(self, decisions: Sequence[VadDecision]) -> None:
        for decision in decisions:
            start, end = round(decision.start * SAMPLE_RATE), round(decision.end * SAMPLE_RATE)
            self._decisions.append((start, end, decision.speech))
            self._decided = end

    def _forget_decisions_before(self, sample: int) -> None:
        while self._decisions and self._decisions[0][1] <= sample:
            self._decisions.popleft()

    def _is_decided(self, sample: int) -> bool:
        return self._decided >= sample or (self._input_ended and self._decided >= self._cutter.timeline.end)

    def _ends_speech_after(self, frame_index: int) -> bool:
        """Whether frame `frame_index`, right after a full speech window, is known to be idle or past the end."""
        if self._input_ended and frame_start_sample(frame_index, self.fps) >= self._cutter.timeline.end:
            return True
        return self._is_decided(frame_start_sample(frame_index + 1, self.fps)) and not self._is_speech(frame_index)

    def _is_speech(self, frame_index: int) -> bool:
        """Whether the gate is open anywhere within the frame."""
        start, end = frame_start_sample(frame_index, self.fps), frame_start_sample(frame_index + 1, self.fps)
        for first, last, speech in self._decisions:
            if first >= end:
                break
            if speech and last > start:
                return True
        return False

    def _pose(self, frame_index: int) -> IdlePose:
        return self._motion.pose(frame_index, self.fps)
