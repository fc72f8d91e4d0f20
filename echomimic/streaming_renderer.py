"""EchoMimic as a live renderer: short audio windows in, a few frames of a talking head out, continuing each other.

It implements `streaming.renderer.Renderer`:

* `prepare_avatar` crops the portrait around its face and caches everything no window changes
  (`echomimic.live_avatar`);
* `open_session` starts an `EchoMimicSession` (`echomimic.live_session`), which keeps what has been shown, so each
  window's context is pinned to the frames on screen, audio features come from a rolling history, utterances
  start from the idle face and end on it, and an interruption stops the window in flight at its next step.

The live window (`LIVE_WINDOW`) is short on purpose: the playout delay must cover a whole window of audio plus its
render (see `streaming.latency_budget`), so four new frames (167 ms at 24 fps) with two of context and 80 ms of
look-ahead keep the first speaking frame within 400 ms of the voice on a GPU that renders a window in 73 ms. The
first window of an utterance has two frames. Longer windows cost less per frame (less context) and add latency.

Frame noise is seeded per global frame index (`frame_noise`), so a context frame is denoised from the noise it was
first drawn from, and a session is reproducible.

Threads: every session shares this renderer's `model_lock`, held for GPU work only (encoding, sampling, decoding),
and its `WindowBatcher`, which runs the windows of sessions that are ready together as one batch: one UNet call
on B windows keeps the GPU busier than B calls in turn, and the scheduler keeps per-call state. Idle frames need
no model and never wait for it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from echomimic.acceleration.backend_names import AUTO
from echomimic.acceleration.backends import accelerate_denoising_unet
from echomimic.acceleration.channels_last import convert_to_channels_last
from echomimic.acceleration.engine_cache import weights_fingerprint
from echomimic.acceleration.profiles import QUALITY, GenerationProfile
from echomimic.acceleration.tiny_decoder import FrameDecoder, make_frame_decoder
from echomimic.acceleration.window_program import WindowShape
from echomimic.live_avatar import EchoMimicAvatar, EyelidsFactory, avatar_memory
from echomimic.live_sampler import DenoisingUNet
from echomimic.live_session import EchoMimicSession
from echomimic.models.whisper_encoder import WhisperAudioEncoder
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline
from echomimic.preprocess import prepare_reference
from echomimic.progress import ProgressCallback
from echomimic.rolling_audio_features import OFFICIAL_SEGMENT_SECONDS
from echomimic.weights import EchoMimicWeights, load_echomimic
from echomimic.window_batcher import WindowBatcher
from streaming.frames import RgbImage
from streaming.renderer import AvatarMemory, DeviceMemory, WindowSpec

logger = logging.getLogger(__name__)

LIVE_WINDOW = WindowSpec(frames=4, context=2, lookahead=0.08, onset_frames=2)
DECODE_FRAMES_PER_CALL = 8
"""Frames per decoder call: a whole batch of windows at 512 would need gigabytes of activations at once."""

FRAMES_PER_SEED = 1_000_003
"""Frame seeds are `seed · FRAMES_PER_SEED + frame` modulo 2**32 (the CPU generator keeps 32 bits of its seed):
frames of one seed never collide, and two seeds share noise only for frames a million (11.5 hours at 24 fps) apart."""


class EchoMimicRenderer:
    """Talking-head frames from EchoMimic v1, window by window, one `EchoMimicSession` per live session."""

    name = "echomimic"
    parallel_renders = 1
    """All GPU work runs behind `model_lock`, one batch at a time: one render lane, however many sessions."""

    def __init__(
        self,
        pipeline: EchoMimicPipeline,
        *,
        size: int = 512,
        fps: float = 24.0,
        window: WindowSpec = LIVE_WINDOW,
        num_inference_steps: int = 6,
        deep_feature_interval: int = 1,
        guidance_scale: float = 1.0,
        seed: int = 420,
        eyelids: EyelidsFactory | None = None,
        audio_segment_seconds: float = OFFICIAL_SEGMENT_SECONDS,
        idle_tail_frames: int = 2,
        blend_frames: int = 3,
        decoder: FrameDecoder | None = None,
        unet: DenoisingUNet | None = None,
        max_batch_sessions: int = 4,
    ) -> None:
        """`eyelids` finds a portrait's eyes so idle frames blink; `audio_segment_seconds` below 30 trades audio
        fidelity for speed (see `echomimic.rolling_audio_features`); `idle_tail_frames` of an utterance's last
        window are pinned to the idle pose, and `blend_frames` idle frames fade in after a speaking one. `decoder`
        (default: the pipeline's SD VAE, 8 frames a call) and `unet` (default: the pipeline's, eager) come from
        `echomimic.acceleration`. The windows of up to `max_batch_sessions` sessions that are ready together are
        denoised as one batch. With `deep_feature_interval` N > 1 the whole UNet runs every Nth step and the steps
        between reuse its deep features (see `echomimic.live_sampler`)."""
        if size % 8 or size < 64:
            raise ValueError(f"size must be a multiple of 8 and at least 64, got {size}")
        if pipeline.audio_features is None:
            raise ValueError("the EchoMimic renderer needs a pipeline with an audio feature extractor")
        longest = pipeline.denoising_unet.config["motion_module_kwargs"]["temporal_position_encoding_max_len"]
        if window.frames + window.context > longest:
            frames = window.frames + window.context
            raise ValueError(f"a window of {frames} frames exceeds the {longest} the motion module can see")
        if idle_tail_frames < 0 or blend_frames < 0:
            raise ValueError("idle_tail_frames and blend_frames must not be negative")
        self.pipeline = pipeline
        self.audio_encoder: WhisperAudioEncoder = pipeline.audio_features.encoder
        self.fps = fps
        self.frame_size = (size, size)
        self.window = window
        self.num_inference_steps = num_inference_steps
        self.deep_feature_interval = deep_feature_interval
        self.guidance_scale = guidance_scale
        self.seed = seed
        self.audio_segment_seconds = audio_segment_seconds
        self.idle_tail_frames = idle_tail_frames
        self.blend_frames = blend_frames
        self.decoder = decoder if decoder is not None else FrameDecoder.sd_vae(pipeline.vae, DECODE_FRAMES_PER_CALL)
        self.unet: DenoisingUNet = unet if unet is not None else pipeline.denoising_unet
        self.model_lock = threading.Lock()
        self.batcher = WindowBatcher(
            pipeline,
            self.unet,
            self.decoder,
            self.model_lock,
            num_inference_steps,
            guidance_scale,
            max_batch_sessions,
            deep_feature_interval,
        )
        self._eyelids = eyelids

    @classmethod
    def from_weights(
        cls,
        weights_dir: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        progress: ProgressCallback | None = None,
        profile: GenerationProfile = QUALITY,
        taesd_dir: Path | None = None,
        backend: str = AUTO,
        engine_dir: Path | None = None,
        channels_last: bool = False,
        fps: float = 24.0,
        window: WindowSpec = LIVE_WINDOW,
        eyelids: EyelidsFactory | None = None,
        audio_segment_seconds: float = OFFICIAL_SEGMENT_SECONDS,
    ) -> EchoMimicRenderer:
        """Load an official weights folder (see `echomimic.weights`) and build the renderer on it with the
        profile's size, steps, deep-feature interval and decoder, the denoising UNet behind `backend` ("auto": the
        best this machine runs); `channels_last` runs the UNet and the decoder in channels-last memory format. Live
        sessions keep the latency `window` whatever the profile's own (see `streaming.latency_budget`)."""
        pipeline = load_echomimic(weights_dir, device, dtype, progress)
        decoder = make_frame_decoder(profile.decoder, pipeline.vae, taesd_dir, DECODE_FRAMES_PER_CALL)
        latent = profile.latent_size
        shapes = [
            WindowShape(1, frames + window.context, latent, latent)
            for frames in sorted({window.first_window_frames, window.frames})
        ]
        unet = accelerate_denoising_unet(
            pipeline.denoising_unet,
            shapes,
            requested=backend,
            weights=weights_fingerprint(EchoMimicWeights.locate(weights_dir)),
            engine_dir=engine_dir,
            deep_feature_interval=profile.deep_feature_interval,
            channels_last=channels_last,
        )
        if channels_last:
            converted = convert_to_channels_last(decoder.network)
            logger.info("frame decoder: %d convolutions in channels-last", len(converted.convolutions))
        return cls(
            pipeline,
            size=profile.size,
            fps=fps,
            window=window,
            num_inference_steps=profile.num_inference_steps,
            deep_feature_interval=profile.deep_feature_interval,
            eyelids=eyelids,
            audio_segment_seconds=audio_segment_seconds,
            decoder=decoder,
            unet=unet,
        )

    def prepare_avatar(self, portrait: RgbImage) -> EchoMimicAvatar:
        prepared = prepare_reference(portrait, size=self.frame_size[0])
        rows = np.flatnonzero(prepared.face_mask.any(axis=1))
        columns = np.flatnonzero(prepared.face_mask.any(axis=0))
        eyelids = None
        if self._eyelids is not None:
            try:
                eyelids = self._eyelids(prepared.image)
            except ValueError:
                eyelids = None  # eyes not found on the crop: idle frames breathe and sway without blinking
        with self.model_lock:
            reference = self.pipeline.prepare_reference(prepared.image, prepared.face_mask)
            banks = self.pipeline.denoising_unet.project_banks(reference.banks)
        return EchoMimicAvatar(
            image=prepared.image,
            reference=replace(reference, banks=banks),
            face_center=(float(columns[0] + columns[-1] + 1) / 2, float(rows[0] + rows[-1] + 1) / 2),
            face_width=float(columns[-1] + 1 - columns[0]),
            eyelids=eyelids,
        )

    def open_session(self, avatar: EchoMimicAvatar) -> EchoMimicSession:
        return EchoMimicSession(self, avatar)

    def avatar_memory(self, avatar: EchoMimicAvatar) -> AvatarMemory:
        return avatar_memory(avatar)

    def device_memory(self) -> DeviceMemory | None:
        """For admission, on a CUDA device: the bytes the driver has free (memory torch has cached stays with the
        sessions that use it at their peaks) and what one more session takes there, the most one window has taken
        beyond what was allocated before its batch (measured from the warm-up on). None on the CPU."""
        device = self.pipeline.vae.device
        if device.type != "cuda":
            return None
        free_bytes, _ = torch.cuda.mem_get_info(device)
        return DeviceMemory(free_bytes=free_bytes, session_bytes=self.batcher.window_device_bytes)

    def frame_noise(self, first_frame: int, num_frames: int, latent_shape: tuple[int, ...]) -> torch.Tensor:
        return frame_noise(self.seed, first_frame, num_frames, latent_shape)


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
