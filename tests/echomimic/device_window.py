"""One live window with its inputs where the live renderer has them: noise drawn on the host, audio features and
shown latents on the pipeline's device. The GPU test denoises it under torch's sync debug mode, so the sampler's
own copies are what is checked; a CPU test runs the same code."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from echomimic.acceleration.window_program import AUDIO_TOKENS_PER_FRAME
from echomimic.live_sampler import PinnedFrames, WindowInputs
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline

SIZE = 64
FRAMES = 6
CONTEXT = 2


def window_on_the_device(pipeline: EchoMimicPipeline) -> WindowInputs:
    """A window of `FRAMES` frames at `SIZE`, its first `CONTEXT` pinned, as the live renderer prepares it (banks
    projected once, noise on the host, audio features and shown latents on the device)."""
    device, dtype = pipeline.device, pipeline.working_dtype
    generator = torch.Generator().manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    face_mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    face_mask[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 1
    reference = pipeline.prepare_reference(image, face_mask)
    reference = replace(reference, banks=pipeline.denoising_unet.project_banks(reference.banks))
    latent = SIZE // pipeline.vae_scale_factor
    audio_width = pipeline.denoising_unet.config["cross_attention_dim"]
    audio = torch.randn(FRAMES, AUDIO_TOKENS_PER_FRAME, audio_width, generator=generator)
    noise = torch.randn(1, 4, FRAMES, latent, latent, generator=generator)
    shown = torch.randn(1, 4, CONTEXT, latent, latent, generator=generator)
    return WindowInputs(
        reference=reference,
        audio_features=audio.to(device, dtype),
        noise=noise,
        pinned=PinnedFrames(list(range(CONTEXT)), shown.to(device, dtype)),
    )
