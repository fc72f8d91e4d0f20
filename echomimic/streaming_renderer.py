"""EchoMimic as a streaming renderer: short audio windows in, a few frames of talking head out.

It satisfies the streaming `Renderer` protocol by shape (`echomimic` never imports `streaming`):

* `prepare_avatar` crops the portrait around its face, VAE-encodes it, runs the reference UNet and the face locator
  once, and keeps the results (banks already rounded through float16) for every later window;
* `render_window` turns the window's audio (context frames, new frames and look-ahead) into whisper tokens, denoises
  `context + new` frames with the few-step DDIM sampler, and decodes only the new frames. They fit the motion
  module's 32-frame span, so they form a single UNet window that stays in place (no wrap-around, no per-step shift);
* `render_idle` shows the cropped portrait under a small affine per idle pose (head offset and roll, breathing),
  with no diffusion at all; blinks are not drawn.

Windows are stateless: the initial noise of every frame is drawn from a seed made of the renderer's seed and the
frame's global index, so a frame that reappears as context in the next window starts from the same noise it was
drawn from, and the new frames continue what was shown.

Threads: the stream calls a renderer from worker threads, and every session shares this one. The model part of
`prepare_avatar` and `render_window` runs under a lock, one call at a time: the GPU would serialise the work anyway,
two calls at once would double its activation memory, and the pipeline's scheduler keeps per-call state.
`render_idle` needs no model and never waits for it. Avatars are immutable and may be shared between threads.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import torch

from echomimic.audio_features import SAMPLE_RATE, AudioFeatureExtractor
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline, ReferenceConditioning, frames_to_uint8
from echomimic.preprocess import prepare_reference
from echomimic.progress import ProgressCallback
from echomimic.weights import load_echomimic

RgbImage = npt.NDArray[np.uint8]

BREATH_SCALE = 0.006
"""Full breath (phase ±1) scales the portrait by ±0.6% about its bottom centre: visible, never distracting."""

FRAMES_PER_SEED = 1_000_003
"""Frame seeds are `seed · FRAMES_PER_SEED + frame` modulo 2**32 (the CPU generator keeps 32 bits of its seed):
frames of one seed never collide, and two seeds share noise only for frames a million (11.5 hours at 24 fps) apart."""


@dataclass(frozen=True, slots=True)
class EchoMimicWindow:
    """How the renderer wants its audio cut (the streaming `WindowSpec` by shape): `frames` new frames per window,
    `context` already-shown frames before them, `lookahead` seconds of audio after them."""

    frames: int = 12
    context: int = 3
    lookahead: float = 0.2


class IdlePoseLike(Protocol):
    """The parts of `streaming.frames.IdlePose` used here."""

    @property
    def head_offset(self) -> tuple[float, float]: ...
    @property
    def head_roll(self) -> float: ...
    @property
    def breath(self) -> float: ...


class AudioWindowLike(Protocol):
    """The parts of `streaming.frames.AudioWindow` used here."""

    @property
    def samples(self) -> npt.NDArray[np.float32]: ...
    @property
    def fps(self) -> float: ...
    @property
    def first_frame(self) -> int: ...
    @property
    def frame_count(self) -> int: ...
    @property
    def context_frames(self) -> int: ...
    @property
    def lookahead(self) -> float: ...

    def sample_offset(self, media_time: float) -> int: ...


@dataclass(frozen=True)
class EchoMimicAvatar:
    """A prepared portrait: the cropped image idle frames are drawn from, and the diffusion conditioning."""

    image: RgbImage
    """[S, S, 3] the portrait cropped around the face, as the model sees it."""
    reference: ReferenceConditioning
    face_center: tuple[float, float]
    """(x, y) pixels in `image`."""
    face_width: float
    """Pixels in `image`; idle head offsets are in face widths."""


class EchoMimicRenderer:
    """Talking-head frames from EchoMimic v1, window by window."""

    name = "echomimic"

    def __init__(
        self,
        pipeline: EchoMimicPipeline,
        *,
        size: int = 512,
        fps: float = 24.0,
        window: EchoMimicWindow | None = None,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        seed: int = 420,
    ) -> None:
        self.pipeline = pipeline
        self.fps = fps
        self.frame_size = (size, size)
        self.window = window if window is not None else EchoMimicWindow()
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.seed = seed
        self._model_lock = threading.Lock()
        if pipeline.audio_features is None:
            raise ValueError("the EchoMimic renderer needs a pipeline with an audio feature extractor")
        self._audio: AudioFeatureExtractor = pipeline.audio_features
        longest = pipeline.denoising_unet.config["motion_module_kwargs"]["temporal_position_encoding_max_len"]
        if self.window.frames + self.window.context > longest:
            frames = self.window.frames + self.window.context
            raise ValueError(f"a window of {frames} frames exceeds the {longest} the motion module can see")

    @classmethod
    def from_weights(
        cls,
        weights_dir: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        progress: ProgressCallback | None = None,
        size: int = 512,
        fps: float = 24.0,
        window: EchoMimicWindow | None = None,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        seed: int = 420,
    ) -> EchoMimicRenderer:
        """Load an official weights folder (see `echomimic.weights`) and build the renderer on it."""
        pipeline = load_echomimic(weights_dir, device, dtype, progress)
        return cls(
            pipeline,
            size=size,
            fps=fps,
            window=window,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            seed=seed,
        )

    def prepare_avatar(self, portrait: RgbImage) -> EchoMimicAvatar:
        prepared = prepare_reference(portrait, size=self.frame_size[0])
        rows = np.flatnonzero(prepared.face_mask.any(axis=1))
        columns = np.flatnonzero(prepared.face_mask.any(axis=0))
        with self._model_lock:
            reference = self.pipeline.prepare_reference(prepared.image, prepared.face_mask)
        return EchoMimicAvatar(
            image=prepared.image,
            reference=reference,
            face_center=(float(columns[0] + columns[-1] + 1) / 2, float(rows[0] + rows[-1] + 1) / 2),
            face_width=float(columns[-1] + 1 - columns[0]),
        )

    def render_window(self, avatar: EchoMimicAvatar, window: AudioWindowLike) -> list[RgbImage]:
        if window.fps != self.fps:
            raise ValueError(f"window is cut for {window.fps} fps but this renderer draws {self.fps} fps")
        if window.frame_count == 0:
            return []
        num_frames = window.context_frames + window.frame_count
        first_frame = window.first_frame - window.context_frames
        audio = self._window_audio(window, first_frame, num_frames)
        noise = frame_noise(self.seed, first_frame, num_frames, tuple(avatar.reference.latents.shape[1:]))
        with self._model_lock:
            audio_features = self._audio.features_for_video(audio, self.fps, num_frames)
            output = self.pipeline(
                reference=avatar.reference,
                audio_features=audio_features,
                noise=noise,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                context_frames=num_frames,
                context_overlap=0,
                context_shift_per_step=0,
                output_type="latent",
            )
            new_frames = frames_to_uint8(
                self.pipeline.decode_frames(output.latents[:, :, num_frames - window.frame_count :])
            )
        return list(new_frames)

    def render_idle(self, avatar: EchoMimicAvatar, poses: Sequence[IdlePoseLike]) -> list[RgbImage]:
        return [self._posed(avatar, pose) for pose in poses]

    def _window_audio(self, window: AudioWindowLike, first_frame: int, num_frames: int) -> npt.NDArray[np.float32]:
        """16 kHz samples from the first denoised frame's start through the look-ahead, zero-padded where missing."""
        start = window.sample_offset(first_frame / self.fps)
        samples = np.asarray(window.samples, dtype=np.float32)
        if start < 0:
            samples = np.concatenate([np.zeros(-start, dtype=np.float32), samples])
        else:
            samples = samples[start:]
        needed = math.ceil((num_frames / self.fps + window.lookahead) * SAMPLE_RATE)
        if len(samples) < needed:
            samples = np.concatenate([samples, np.zeros(needed - len(samples), dtype=np.float32)])
        return samples

    def _posed(self, avatar: EchoMimicAvatar, pose: IdlePoseLike) -> RgbImage:
        """The portrait rolled about the face centre, scaled about its bottom centre by breath, then shifted."""
        size = avatar.image.shape[0]
        roll = np.asarray(cv2.getRotationMatrix2D(avatar.face_center, pose.head_roll, 1.0), np.float64)  # [2, 3]
        breath_scale = 1.0 + BREATH_SCALE * pose.breath
        breath = np.asarray(cv2.getRotationMatrix2D((size / 2, float(size)), 0.0, breath_scale), np.float64)
        affine = _compose(breath, roll)
        affine[:, 2] += np.array(pose.head_offset) * avatar.face_width
        posed = cv2.warpAffine(
            avatar.image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return np.ascontiguousarray(posed, dtype=np.uint8)


def frame_noise(seed: int, first_frame: int, num_frames: int, latent_shape: tuple[int, ...]) -> torch.Tensor:
    """[1, C, F, h, w] initial noise for global frames first_frame … first_frame+F−1, each from a seed of its own
    (`latent_shape` is (C, h, w)), so a frame gets the same noise in every window that contains it."""
    channels, height, width = latent_shape
    frames = [
        torch.randn((1, channels, 1, height, width), generator=torch.Generator().manual_seed(_frame_seed(seed, frame)))
        for frame in range(first_frame, first_frame + num_frames)
    ]
    return torch.cat(frames, dim=2)


def _frame_seed(seed: int, frame: int) -> int:
    return (seed * FRAMES_PER_SEED + frame) % 2**32


def _compose(outer: npt.NDArray[np.float64], inner: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The 2x3 affine that applies `inner`, then `outer`."""
    composed: npt.NDArray[np.float64] = (np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]]))[:2]
    return composed
