"""Offline rendering: a whole clip from a portrait and a recording, as the official `infer_audio2vid_acc.py` does.

The portrait is cropped around its face (`echomimic.preprocess`), the clip gets one frame per 1/fps of audio, and the
accelerated sampler runs with the official defaults (6 DDIM steps, no classifier-free guidance, context windows of
12 frames overlapping by 3, seed 420).
"""

from __future__ import annotations

import math
import os

import numpy as np
import numpy.typing as npt
import torch

from echomimic.audio_features import SAMPLE_RATE
from echomimic.pipelines.pipeline_echomimic import frames_to_uint8
from echomimic.preprocess import prepare_reference
from echomimic.progress import ProgressCallback, report
from echomimic.weights import load_echomimic


def render_clip(
    weights_dir: str | os.PathLike[str],
    portrait_rgb: npt.NDArray[np.uint8],
    waveform_16k: npt.NDArray[np.float32],
    fps: float = 24.0,
    progress: ProgressCallback | None = None,
    *,
    size: int = 512,
    num_inference_steps: int = 6,
    guidance_scale: float = 1.0,
    seed: int = 420,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> npt.NDArray[np.uint8]:
    """Render `portrait_rgb` (uint8 [H, W, 3]) speaking `waveform_16k` (16 kHz mono float32).

    Returns [F, size, size, 3] uint8 RGB frames, F = ceil(duration · fps). Raises `ValueError` (`WeightsError` for
    the weights folder) with a readable message on bad input. `progress` receives "loading", "preparing",
    "denoising" and "decoding" events.
    """
    waveform = np.asarray(waveform_16k, dtype=np.float32)
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(f"audio must be non-empty 16 kHz mono samples, got shape {list(waveform.shape)}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    num_frames = math.ceil(waveform.size * fps / SAMPLE_RATE)

    prepared = prepare_reference(portrait_rgb, size=size)
    report(progress, "preparing", 1, 1, "face crop")
    pipeline = load_echomimic(weights_dir, device, dtype, progress)
    output = pipeline(
        prepared.image,
        prepared.face_mask,
        waveform,
        video_length=num_frames,
        fps=fps,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
        progress=progress,
    )
    return frames_to_uint8(pipeline.decode_frames(output.latents, progress))
