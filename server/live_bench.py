"""`echolive bench`: a renderer through the same stream, pacer and latency budget as a live session, in real time.

A speech file, padded with silence so that speech starts and ends inside the run, is pushed into an `AvatarStream`
in 20 ms chunks, each when its last sample would have been spoken (as a microphone delivers it). The frames go
through a `FramePacer` with the playout delay a live session of this renderer would get (its latency budget,
with the render time measured by the same warm-up the server does), and the pacer's ticks are taken as the video
track takes them. The report:

* render time per window (p50, p95) and the real-time factor (render seconds per second of video drawn);
* onset latency: for each utterance in the file, from the moment its voice starts to the moment the pacer sends
  its first speaking frame;
* frames sent, dropped and repeated by the pacer;
* seam scores and the lip-sync offset (`server.frame_metrics`), measured on every frame drawn.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from server.frame_metrics import Box, DrawnFrame, FrameObserver
from server.metrics import ServerMetrics
from server.render_times import RenderTimes, percentile
from server.session_core import ENCODE_ALLOWANCE, automatic_playout_delay
from server.timed_renderer import RenderCall, TimedRenderer
from server.warm_up import warm_up
from streaming.avatar_stream import AvatarStream, StreamSettings
from streaming.clock import MonotonicClock
from streaming.frames import SAMPLE_RATE, AudioChunk, FloatAudio, RgbImage
from streaming.lite.face_layout import detect_face, locate_features
from streaming.pacer import FramePacer
from streaming.renderer import Renderer

CHUNK_SECONDS = 0.02
PADDING_SECONDS = 1.0
"""Silence before and after the speech, so the run shows idle → speech → idle."""
ONSET_LEVEL_DBFS = -35.0
ONSET_GAP_SECONDS = 0.3
"""An utterance starts where the voice rises above `ONSET_LEVEL_DBFS` after at least this long below it."""
DRAIN_SECONDS = 5.0
"""How long the pacer may keep sending after the last frame was drawn, at most."""


@dataclass(frozen=True)
class BenchReport:
    renderer: str
    frame_size: tuple[int, int]
    fps: float
    speech_seconds: float
    windows: int
    window_frames: int
    window_render_p50: float
    window_render_p95: float
    realtime_factor: float
    """Render seconds per second of video drawn (below 1 keeps up)."""
    playout_delay: float
    latency_budget: str
    onset_latencies: list[float]
    frames_sent: int
    frames_dropped: int
    frames_repeated: int
    seam_window_boundaries: float | None
    seam_transitions: float | None
    silence_filled: float
    """Seconds of silence the stream put on its timeline for audio that came too late (a loaded machine)."""
    lip_sync_offset: float | None
    """Seconds the mouth moves after the voice (negative: before)."""

    @property
    def onset_latency_median(self) -> float | None:
        return statistics.median(self.onset_latencies) if self.onset_latencies else None

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "onset_latency_median": self.onset_latency_median}, indent=2)

    def describe(self) -> str:
        def ms(seconds: float | None) -> str:
            return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"

        def ratio(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f}"

        width, height = self.frame_size
        return "\n".join(
            [
                f"renderer             {self.renderer} at {width}x{height}, {self.fps:g} fps, "
                f"{self.speech_seconds:.1f} s of speech",
                f"render per window    p50 {ms(self.window_render_p50)}, p95 {ms(self.window_render_p95)} "
                f"({self.windows} windows of up to {self.window_frames} frames)",
                f"real-time factor     {self.realtime_factor:.2f} (render seconds per second of video; < 1 keeps up)",
                f"playout delay        {self.playout_delay * 1000:.0f} ms; budget {self.latency_budget}",
                f"onset to first frame median {ms(self.onset_latency_median)} over {len(self.onset_latencies)} "
                f"utterances ({', '.join(ms(latency) for latency in self.onset_latencies)})",
                f"frames               {self.frames_sent} sent, {self.frames_dropped} dropped, "
                f"{self.frames_repeated} repeated; {self.silence_filled:.2f} s of late audio taken as silence",
                f"seam score           window boundaries {ratio(self.seam_window_boundaries)}, "
                f"speech/idle transitions {ratio(self.seam_transitions)} (1 = like any frame step)",
                f"lip-sync offset      {ms(self.lip_sync_offset)} (positive: mouth after voice)",
            ]
        )


def run_bench(renderer: Renderer[Any], portrait: RgbImage, speech: FloatAudio) -> BenchReport:
    return asyncio.run(_bench(renderer, portrait, speech))


async def _bench(renderer: Renderer[Any], portrait: RgbImage, speech: FloatAudio) -> BenchReport:
    log = _RenderLog()
    timed = TimedRenderer(renderer, ServerMetrics().render_seconds, RenderTimes(), on_render=log.add)
    avatar = timed.prepare_avatar(portrait)
    await asyncio.to_thread(warm_up, timed, avatar)
    log.clear()
    clock = MonotonicClock()
    stream = AvatarStream(timed, avatar, StreamSettings(), clock)
    budget = stream.latency_budget(render=timed.times.p95(), encode=ENCODE_ALLOWANCE)
    playout_delay = automatic_playout_delay(budget)
    pacer = FramePacer(clock, stream.fps, playout_delay)
    padding = np.zeros(round(PADDING_SECONDS * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([padding, speech, padding])
    total_frames = int(len(audio) / SAMPLE_RATE * stream.fps)
    observer = FrameObserver(None)
    sent: list[tuple[float, int, bool]] = []  # (wall time, frame index, speaking) of each new frame sent
    landed: list[tuple[int, FloatAudio]] = []  # where each chunk landed on the stream's timeline

    async def feed() -> None:
        chunk = round(CHUNK_SECONDS * SAMPLE_RATE)
        for start in range(0, len(audio), chunk):
            piece = audio[start : start + chunk]
            await clock.sleep_until(stream.origin + (start + len(piece)) / SAMPLE_RATE)
            landed.append((round(stream.push_audio(AudioChunk(piece, start / SAMPLE_RATE)) * SAMPLE_RATE), piece))
        await stream.flush()

    async def draw() -> None:
        async for frame in stream:
            if observer.mouth is None and frame.index == 0:
                observer.mouth = _mouth_box(frame.image)
            observer.observe(DrawnFrame(frame.index, frame.image, frame.speaking, log.window_of(frame.index)))
            pacer.push(frame)

    async def send() -> None:
        last = None
        while last is None or last.index < total_frames - 1:
            frame = await pacer.next_frame()
            if frame is not last:
                sent.append((clock.now(), frame.index, frame.speaking))
            last = frame

    await stream.start()
    pacer.anchor(0.0, stream.origin)
    sender = asyncio.create_task(send())
    try:
        await asyncio.gather(feed(), draw())
        await asyncio.wait_for(sender, timeout=playout_delay + DRAIN_SECONDS)
    except TimeoutError:
        pass  # the last frames were dropped as late: the pacer had nothing more to send
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await stream.aclose()

    window_seconds = [call.seconds for call in log.windows]
    drawn_seconds = sum(call.seconds for call in log.calls)
    frames_drawn = sum(call.frame_count for call in log.calls)
    seams = observer.seams()
    return BenchReport(
        renderer=renderer.name,
        frame_size=renderer.frame_size,
        fps=stream.fps,
        speech_seconds=len(speech) / SAMPLE_RATE,
        windows=len(window_seconds),
        window_frames=stream.window_spec.frames,
        window_render_p50=percentile(window_seconds, 0.5),
        window_render_p95=percentile(window_seconds, 0.95),
        realtime_factor=drawn_seconds / max(1, frames_drawn) * stream.fps,
        playout_delay=playout_delay,
        latency_budget=budget.describe(),
        onset_latencies=_onset_latencies(audio, sent, stream.origin, stream.fps),
        frames_sent=pacer.stats.emitted + pacer.stats.repeated,
        frames_dropped=pacer.stats.dropped,
        frames_repeated=pacer.stats.repeated,
        seam_window_boundaries=seams.window_boundaries,
        seam_transitions=seams.transitions,
        silence_filled=stream.stats.silence_filled,
        lip_sync_offset=observer.lip_sync_offset(_timeline(landed), stream.fps),
    )


class _RenderLog:
    """Every render call of the run, from `TimedRenderer.on_render` (called from the render thread)."""

    def __init__(self) -> None:
        self.calls: list[RenderCall] = []
        self.windows: list[RenderCall] = []
        self._window_starts: list[int] = []  # first frame of each window, in order

    def add(self, call: RenderCall) -> None:
        self.calls.append(call)
        if call.kind == "window":
            self.windows.append(call)
            self._window_starts.append(call.first_frame)

    def clear(self) -> None:
        self.calls.clear()
        self.windows.clear()
        self._window_starts.clear()

    def window_of(self, frame_index: int) -> int | None:
        """Which window (counting from 0) drew the frame; None for an idle frame."""
        number = bisect.bisect_right(self._window_starts, frame_index) - 1
        if number < 0:
            return None
        window = self.windows[number]
        return number if frame_index < window.first_frame + window.frame_count else None


def _timeline(landed: list[tuple[int, FloatAudio]]) -> FloatAudio:
    """The stream's timeline audio: each chunk where it landed, silence where the stream filled some in."""
    end = max((start + len(piece) for start, piece in landed), default=0)
    timeline = np.zeros(end, dtype=np.float32)
    for start, piece in landed:
        timeline[start : start + len(piece)] = piece
    return timeline


def _mouth_box(image: RgbImage) -> Box | None:
    """Around the mouth of the face in `image` (lips at rest plus room for the jaw); None without a face."""
    try:
        layout = locate_features(image, detect_face(image))
    except ValueError:
        return None
    (cx, cy), width = layout.mouth_center, layout.mouth_width
    left, top = max(0, round(cx - 0.6 * width)), max(0, round(cy - 0.4 * width))
    return left, top, round(1.2 * width), round(1.0 * width)


def _onset_latencies(audio: FloatAudio, sent: list[tuple[float, int, bool]], origin: float, fps: float) -> list[float]:
    """For each utterance onset in `audio` that found the avatar idle, seconds from its voice starting to the first
    speaking frame sent (an onset inside the gate's hangover of the utterance before starts nothing)."""
    latencies = []
    for onset in _onsets(audio):
        before = [speaking for _, index, speaking in sent if index / fps < onset]
        if before and before[-1]:
            continue
        first = next((wall for wall, _, speaking in sent if speaking and wall >= origin + onset), None)
        if first is not None:
            latencies.append(first - (origin + onset))
    return latencies


def _onsets(audio: FloatAudio) -> list[float]:
    chunk = round(CHUNK_SECONDS * SAMPLE_RATE)
    levels = [
        20 * np.log10(max(float(np.sqrt(np.mean(np.square(audio[start : start + chunk])))), 1e-9))
        for start in range(0, len(audio) - chunk + 1, chunk)
    ]
    onsets, quiet = [], ONSET_GAP_SECONDS
    for number, level in enumerate(levels):
        if level >= ONSET_LEVEL_DBFS:
            if quiet >= ONSET_GAP_SECONDS:
                onsets.append(number * CHUNK_SECONDS)
            quiet = 0.0
        else:
            quiet += CHUNK_SECONDS
    return onsets
