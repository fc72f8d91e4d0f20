"""One live session of EchoMimic: what has been shown, so that every window continues it.

State, all bounded whatever the session's length:

* the last `context` frames drawn (image, and clean latent once known): the next window is denoised with them
  as its pinned context (`echomimic.live_sampler`), so its first new frame continues the last one shown. Idle
  frames have no latent until a speech window needs them; then they are VAE-encoded once;
* the rolling audio history (`echomimic.rolling_audio_features`), from which every window's whisper chunks come;
* the start of a blend into idle: after a speaking frame the first `blend_frames` idle frames fade from it to the
  idle pose, so an utterance cut short (an interruption, or a window that could not pin its end) never jumps.

Transitions: an utterance starts from the frames on screen (the idle frames are the pinned context); the window
that ends it pins its last frames to the idle frames due there, so the face lands back on its idle pose; then the
blend covers what the VAE round trip changed.

Threads: the stream calls `render_window` and `render_idle` from one worker thread at a time, and `reset` from the
event loop. `reset` only records the interruption and bumps a generation; the render running then stops at its
next denoising step and commits nothing, and the next call applies the reset before drawing. GPU work runs in the
renderer's `WindowBatcher`, batched with other sessions' windows under one model lock; everything else (noise,
idle frames, blends) outside it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from echomimic.live_avatar import EchoMimicAvatar, idle_frame
from echomimic.live_sampler import PinnedFrames, WindowInputs
from echomimic.rolling_audio_features import RollingAudioFeatures
from echomimic.window_batcher import WindowJob
from streaming.frames import SAMPLE_RATE, AudioWindow, IdlePose, RgbImage

if TYPE_CHECKING:
    from echomimic.streaming_renderer import EchoMimicRenderer


@dataclass
class _ShownFrame:
    index: int
    image: RgbImage
    latent: torch.Tensor | None
    """[4, h, w] clean latent; None for an idle frame not yet encoded."""
    speaking: bool


@dataclass(frozen=True)
class _Reset:
    resume_frame: int
    last_shown: RgbImage | None


class EchoMimicSession:
    """Satisfies `streaming.renderer.RenderSession` for one avatar."""

    def __init__(self, renderer: EchoMimicRenderer, avatar: EchoMimicAvatar) -> None:
        self._renderer = renderer
        self._avatar = avatar
        self._audio = RollingAudioFeatures(renderer.audio_encoder, renderer.fps, renderer.audio_segment_seconds)
        self._shown: deque[_ShownFrame] = deque(maxlen=max(1, renderer.window.context))
        self._blend_from: _ShownFrame | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self._pending_reset: _Reset | None = None
        self.windows_rendered = 0
        self.last_window_latents: torch.Tensor | None = None
        """[1, 4, F, h, w] clean latents of the last window, its pinned context first (for inspection)."""

    def render_window(self, window: AudioWindow) -> list[RgbImage]:
        renderer = self._renderer
        if window.fps != renderer.fps:
            raise ValueError(f"window is cut for {window.fps} fps but this renderer draws {renderer.fps} fps")
        generation = self._apply_reset()
        if window.frame_count == 0:
            return []
        context = self._context_before(window.first_frame, window.context_frames)
        first_frame = window.first_frame - len(context)
        num_frames = len(context) + window.frame_count
        self._audio.write(round(window.start_time * SAMPLE_RATE), window.samples)
        latent_shape = tuple(self._avatar.reference.latents.shape[1:])
        noise = renderer.frame_noise(first_frame, num_frames, latent_shape)
        tail = self._closing_tail(window)
        tail_images = [idle_frame(self._avatar, pose) for pose in window.poses[len(window.poses) - tail :]]

        def prepare() -> WindowInputs:
            """Under the model lock: the pinned latents (encoding what is missing) and the audio features."""
            self._encode_missing_latents(context)
            pinned_latents = [frame.latent for frame in context if frame.latent is not None]
            if tail_images:
                pinned_latents.extend(renderer.pipeline.encode_frames(np.stack(tail_images)))
            positions = list(range(len(context))) + list(range(num_frames - tail, num_frames))
            return WindowInputs(
                reference=self._avatar.reference,
                audio_features=self._audio.chunks(first_frame, num_frames),
                noise=noise,
                pinned=PinnedFrames(positions, torch.stack(pinned_latents, dim=1)[None]) if positions else None,
                should_stop=lambda: self._generation != generation,
            )

        rendered = renderer.batcher.run(WindowJob(prepare, num_frames, decode_from=len(context)))
        if rendered is None:
            return []
        with self._lock:
            if generation == self._generation:
                self.last_window_latents = rendered.latents
                self.windows_rendered += 1
                new_latents = rendered.latents[0, :, len(context) :].clone()  # [4, frames, h, w], not a view
                for offset, image in enumerate(rendered.images):
                    self._shown.append(_ShownFrame(window.first_frame + offset, image, new_latents[:, offset], True))
        return list(rendered.images)

    def render_idle(self, first_frame: int, poses: Sequence[IdlePose]) -> list[RgbImage]:
        self._apply_reset()
        last = self._shown[-1] if self._shown else None
        if last is not None and last.speaking and last.index == first_frame - 1:
            self._blend_from = last
        images = []
        for offset, pose in enumerate(poses):
            index = first_frame + offset
            image = self._blended(index, idle_frame(self._avatar, pose))
            self._shown.append(_ShownFrame(index, image, None, False))
            images.append(image)
        return images

    def reset(self, resume_frame: int, last_shown: RgbImage | None) -> None:
        with self._lock:
            self._generation += 1
            self._pending_reset = _Reset(resume_frame, last_shown)

    def close(self) -> None:
        self._shown.clear()
        self._blend_from = None
        self.last_window_latents = None
        self._audio.restart_at(0)

    @property
    def held_bytes(self) -> int:
        """Host and device memory the session's state holds."""
        frames = sum(
            frame.image.nbytes + (frame.latent.nbytes if frame.latent is not None else 0) for frame in self._shown
        )
        latents = self.last_window_latents.nbytes if self.last_window_latents is not None else 0
        blend = self._blend_from.image.nbytes if self._blend_from is not None else 0
        return frames + latents + blend + self._audio.history_bytes

    def _apply_reset(self) -> int:
        """Apply an interruption recorded since the last call; returns the generation this call draws for."""
        with self._lock:
            pending, self._pending_reset = self._pending_reset, None
            generation = self._generation
        if pending is not None:
            while self._shown and self._shown[-1].index >= pending.resume_frame:
                self._shown.pop()
            self._audio.restart_at(round(pending.resume_frame * SAMPLE_RATE / self._renderer.fps))
            shown_last = self._shown and self._shown[-1].index == pending.resume_frame - 1
            if pending.last_shown is not None and not shown_last:
                self._shown.append(_ShownFrame(pending.resume_frame - 1, pending.last_shown, None, True))
        return generation

    def _context_before(self, first_frame: int, wanted: int) -> list[_ShownFrame]:
        """The shown frames right before `first_frame`, up to `wanted` of them, consecutive."""
        context: list[_ShownFrame] = []
        for frame in reversed(self._shown):
            if len(context) == wanted or frame.index != first_frame - len(context) - 1:
                break
            context.insert(0, frame)
        return context

    def _closing_tail(self, window: AudioWindow) -> int:
        """How many of the window's last frames are pinned to the idle pose: some when the utterance ends here
        and at least one frame stays free to move between the voice and the pose."""
        if not window.ends_speech:
            return 0
        return min(self._renderer.idle_tail_frames, window.frame_count - 1)

    def _encode_missing_latents(self, context: list[_ShownFrame]) -> None:
        missing = [frame for frame in context if frame.latent is None]
        if missing:
            latents = self._renderer.pipeline.encode_frames(np.stack([frame.image for frame in missing]))
            for frame, latent in zip(missing, latents, strict=True):
                frame.latent = latent

    def _blended(self, index: int, idle: RgbImage) -> RgbImage:
        """The idle frame, faded in from the last speaking frame over `blend_frames` frames after it."""
        source = self._blend_from
        blend_frames = self._renderer.blend_frames
        if source is None or not 0 < index - source.index <= blend_frames:
            return idle
        weight = (index - source.index) / (blend_frames + 1)
        mixed = (1.0 - weight) * source.image.astype(np.float32) + weight * idle.astype(np.float32)
        return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
