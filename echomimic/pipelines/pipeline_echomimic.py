"""EchoMimic v1 audio-to-video pipeline: a portrait, a face mask and speech in, a talking-head clip out.

This is the accelerated official sampler (`pipeline_echo_mimic_acc.py`, used by `infer_audio2vid_acc.py`):

* the reference UNet reads the portrait's VAE latents once, at timestep 0, and leaves per-block reference banks
  that every denoising call attends to (cast to float16 and back, as the official `update()` does);
* the face locator turns the face mask into features added after the denoising UNet's `conv_in`;
* whisper features give each frame 50 audio tokens for the audio cross-attention;
* DDIM with v-prediction on a zero-terminal-SNR, trailing schedule denoises the clip in overlapping context windows
  whose positions shift by two frames per step; each step averages the windows' predictions per frame.

With `guidance_scale > 1` every UNet call also runs an unconditional half (zero audio, zero face features, and plain
self-attention instead of the reference banks) and the two are mixed by classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler, DDIMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from echomimic.acceleration.host_transfer import to_device
from echomimic.audio_features import AudioFeatureExtractor
from echomimic.context_windows import OFFICIAL_SHIFT_PER_STEP, ContextWindowSchedule, WindowAverager
from echomimic.models.face_locator import FaceLocator
from echomimic.models.reference_banks import ReferenceBanks
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel
from echomimic.progress import ProgressCallback, report

VAE_LATENT_SCALE = 0.18215
"""The official pipeline scales VAE latents by this constant (the SD 1.x value), not by the VAE config's."""

INITIAL_NOISE_CLAMP = 1.5
"""The official sampler clamps its initial Gaussian draw to [-1.5, 1.5] before scaling it by `init_noise_sigma`."""


@dataclass(frozen=True)
class ReferenceConditioning:
    """Everything the denoising UNet needs from the portrait; computed once per portrait."""

    latents: torch.Tensor
    """[1, 4, h, w] VAE latent mean of the portrait, scaled by 0.18215."""
    banks: ReferenceBanks
    """The reference UNet's banks, already rounded through float16."""
    face_features: torch.Tensor
    """[1, C0, 1, h, w] face-locator output for the face mask."""


@dataclass(frozen=True)
class DenoisingStep:
    """One finished scheduler step, for callers that inspect the sampler."""

    step_index: int
    timestep: int
    model_output: torch.Tensor
    """[B, 4, F, h, w] window-averaged (and guided) v-prediction handed to `scheduler.step`."""
    latents: torch.Tensor
    """[B, 4, F, h, w] `prev_sample` of that step."""


@dataclass(frozen=True)
class EchoMimicPipelineOutput:
    latents: torch.Tensor
    """[B, 4, F, h, w] final latents (unscaled by 0.18215, as the sampler leaves them)."""
    video: torch.Tensor | None
    """[B, 3, F, H, W] float32 in [0, 1] on the CPU; None when `output_type="latent"`."""


def velocity_through_clean_estimate(
    velocity: torch.Tensor, sample: torch.Tensor, alpha_bar_t: torch.Tensor
) -> torch.Tensor:
    """The official round trip from a v-prediction to the velocity that moves `sample` onto its clean estimate.

    x0 = √ᾱ_t·x − √(1−ᾱ_t)·v, then the velocity with respect to a previous timestep whose ᾱ is 1: (x0 − √ᾱ_t·x) /
    (−√(1−ᾱ_t)). Algebraically that is v again; it is kept because it is what the official sampler averages, and
    its rounding moves the result by about 3e-6.
    """
    sqrt_alpha = alpha_bar_t.sqrt().to(sample.dtype)
    sqrt_one_minus_alpha = (1 - alpha_bar_t).sqrt().to(sample.dtype)
    clean_estimate = sqrt_alpha * sample - sqrt_one_minus_alpha * velocity
    return (clean_estimate - sqrt_alpha * sample) / (-sqrt_one_minus_alpha)


def frames_to_uint8(frames: Iterable[torch.Tensor]) -> npt.NDArray[np.uint8]:
    """[3, H, W] images in [0, 1] → [F, H, W, 3] uint8 RGB, converted one by one to keep device memory flat."""
    converted = [(frame * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy() for frame in frames]
    return np.stack(converted)


class EchoMimicPipeline(DiffusionPipeline):
    """The EchoMimic v1 sampler around diffusers components.

    `audio_features` turns a 16 kHz waveform into per-frame whisper tokens; it is only needed when `__call__` gets a
    waveform rather than ready features.
    """

    vae: AutoencoderKL
    reference_unet: ReferenceUNet2DConditionModel
    denoising_unet: EchoUNet3DConditionModel
    face_locator: FaceLocator
    audio_features: AudioFeatureExtractor | None
    scheduler: DDIMScheduler

    def __init__(
        self,
        vae: AutoencoderKL,
        reference_unet: ReferenceUNet2DConditionModel,
        denoising_unet: EchoUNet3DConditionModel,
        face_locator: FaceLocator,
        audio_features: AudioFeatureExtractor | None,
        scheduler: DDIMScheduler,
    ) -> None:
        super().__init__()
        self.register_modules(  # type: ignore[no-untyped-call]
            vae=vae,
            reference_unet=reference_unet,
            denoising_unet=denoising_unet,
            face_locator=face_locator,
            audio_features=audio_features,
            scheduler=scheduler,
        )
        self.vae_scale_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)

    @property
    def working_dtype(self) -> torch.dtype:
        dtype: torch.dtype = self.denoising_unet.dtype
        return dtype

    @staticmethod
    def image_to_vae_input(image: npt.NDArray[np.uint8]) -> torch.Tensor:
        """[H, W, 3] uint8 RGB → [1, 3, H, W] float32 in [-1, 1], as diffusers' `VaeImageProcessor.preprocess`."""
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        return pixels * 2.0 - 1.0

    @torch.no_grad()
    def encode_image(self, image: npt.NDArray[np.uint8]) -> torch.Tensor:
        """[H, W, 3] uint8 RGB → [1, 4, H/8, W/8] latent mean · 0.18215."""
        pixels = self.image_to_vae_input(image).to(device=self.vae.device, dtype=self.vae.dtype)  # [1, 3, H, W]
        latents: torch.Tensor = self.vae.encode(pixels).latent_dist.mean  # [1, 4, h, w]
        return latents * VAE_LATENT_SCALE

    @torch.no_grad()
    def encode_frames(self, images: npt.NDArray[np.uint8]) -> torch.Tensor:
        """[N, H, W, 3] uint8 RGB → [N, 4, H/8, W/8] latent means · 0.18215, in the working dtype, in one batch."""
        pixels = to_device(torch.from_numpy(np.ascontiguousarray(images)), self.vae.device).permute(0, 3, 1, 2)
        pixels = (pixels.float() / 255.0 * 2.0 - 1.0).to(self.vae.dtype)  # [N, 3, H, W] in [-1, 1]
        latents: torch.Tensor = self.vae.encode(pixels).latent_dist.mean
        return (latents * VAE_LATENT_SCALE).to(self.working_dtype)

    @torch.no_grad()
    def prepare_reference(
        self, image: npt.NDArray[np.uint8], face_mask: npt.NDArray[np.float32] | torch.Tensor
    ) -> ReferenceConditioning:
        """Encode the portrait, run the reference UNet once at t=0 and the face locator once.

        `image` is [H, W, 3] uint8 RGB with H and W multiples of 8; `face_mask` is [H, W] in [0, 1].
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"reference image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        height, width = image.shape[:2]
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ValueError(f"reference image size {width}x{height} must be a multiple of {self.vae_scale_factor}")
        mask = torch.as_tensor(face_mask, dtype=torch.float32)
        if tuple(mask.shape) != (height, width):
            raise ValueError(f"face mask must be [{height}, {width}] like the image, got {list(mask.shape)}")

        device, dtype = self._execution_device, self.working_dtype
        latents = self.encode_image(image).to(dtype)  # [1, 4, h, w]
        timestep = torch.zeros((), dtype=torch.long, device=device)
        banks = self.reference_unet(latents, timestep).rounded_to_fp16()
        mask = mask.to(device=device, dtype=dtype)[None, None, None]  # [1, 1, 1, H, W]
        face_features = self.face_locator(mask)  # [1, C0, 1, h, w]
        return ReferenceConditioning(latents=latents, banks=banks, face_features=face_features)

    @torch.no_grad()
    def decode_frames(self, latents: torch.Tensor, progress: ProgressCallback | None = None) -> Iterator[torch.Tensor]:
        """[B, 4, F, h, w] → one [3, H, W] float32 image in [0, 1] per frame (batch-major), decoded one at a time
        as the official decoder does."""
        flat = (latents / VAE_LATENT_SCALE).permute(0, 2, 1, 3, 4).flatten(0, 1)  # [(B F), 4, h, w]
        for index in range(flat.shape[0]):
            image = self.vae.decode(flat[index : index + 1].to(self.vae.dtype)).sample[0]  # [3, H, W] in [-1, 1]
            report(progress, "decoding", index + 1, flat.shape[0])
            yield (image / 2 + 0.5).clamp(0, 1).float()

    def decode_latents(self, latents: torch.Tensor, progress: ProgressCallback | None = None) -> torch.Tensor:
        """[B, 4, F, h, w] → [B, 3, F, H, W] float32 in [0, 1] on the CPU.

        Each frame leaves the device as soon as it is decoded, so a long clip never sits on the GPU as float pixels.
        """
        batch, _, num_frames = latents.shape[:3]
        video = torch.stack([frame.cpu() for frame in self.decode_frames(latents, progress)])  # [(B F), 3, H, W]
        return video.reshape(batch, num_frames, *video.shape[1:]).permute(0, 2, 1, 3, 4)  # [B, 3, F, H, W]

    @torch.no_grad()
    def __call__(
        self,
        ref_image: npt.NDArray[np.uint8] | None = None,
        face_mask: npt.NDArray[np.float32] | torch.Tensor | None = None,
        waveform: npt.NDArray[np.float32] | None = None,
        *,
        reference: ReferenceConditioning | None = None,
        audio_features: torch.Tensor | None = None,
        video_length: int | None = None,
        fps: float = 24.0,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        context_frames: int = 12,
        context_overlap: int = 3,
        context_shift_per_step: int = OFFICIAL_SHIFT_PER_STEP,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        output_type: Literal["pt", "latent"] = "pt",
        progress: ProgressCallback | None = None,
        callback_on_step_end: Callable[[DenoisingStep], None] | None = None,
    ) -> EchoMimicPipelineOutput:
        """Render a clip.

        Give the portrait either as `ref_image` ([H, W, 3] uint8) with `face_mask` ([H, W] in [0, 1]) or as a
        `reference` from `prepare_reference`; give the speech either as `waveform` (16 kHz mono float32) or as
        `audio_features` ([F, 50, 384] whisper tokens per frame). The clip has as many frames as the audio gives,
        or `video_length` if that is fewer. `noise` is the raw Gaussian draw [1, 4, F, h, w]; without it one is
        drawn from `generator`.
        """
        # 1. Check the inputs.
        if waveform is not None and audio_features is not None:
            raise ValueError("give either `waveform` or `audio_features`, not both")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        device, dtype = self._execution_device, self.working_dtype
        do_classifier_free_guidance = guidance_scale > 1.0

        # 2. Portrait: VAE latents, reference banks, face features.
        if reference is None:
            if ref_image is None or face_mask is None:
                raise ValueError("give either `reference` or both `ref_image` and `face_mask`")
            reference = self.prepare_reference(ref_image, face_mask)

        # 3. Speech: whisper tokens per video frame.
        if audio_features is None:
            if waveform is None:
                raise ValueError("give either `waveform` or `audio_features`")
            if self.audio_features is None:
                raise ValueError("this pipeline has no audio feature extractor; pass `audio_features` instead")
            audio_features = self.audio_features.features_for_video(waveform, fps)
        audio = audio_features.to(device=device, dtype=dtype)
        if audio.ndim == 3:
            audio = audio[None]  # [1, F, 50, 384]
        num_frames = audio.shape[1] if video_length is None else min(video_length, audio.shape[1])
        audio = audio[:, :num_frames]

        # 4. Timesteps.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        alphas_cumprod = self.scheduler.alphas_cumprod.to(device)

        # 5. Initial latents: the clamped Gaussian draw.
        height, width = reference.latents.shape[-2:]
        shape = (1, self.denoising_unet.config["in_channels"], num_frames, height, width)
        if noise is None:
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        latents = noise.to(device=device, dtype=dtype).clamp(-INITIAL_NOISE_CLAMP, INITIAL_NOISE_CLAMP)
        latents = latents * self.scheduler.init_noise_sigma  # [1, 4, F, h, w]

        # 6. Conditioning batches: [unconditional, conditional] under guidance, else conditional alone.
        face = reference.face_features
        banks = reference.banks
        if do_classifier_free_guidance:
            face = torch.cat([torch.zeros_like(face), face])  # [2, C0, 1, h, w]
            banks = banks.repeat_for_cfg()
        schedule = ContextWindowSchedule(num_frames, context_frames, context_overlap, context_shift_per_step)
        guided_batch = 2 if do_classifier_free_guidance else 1

        # 7. Denoising loop. Progress counts UNet calls: on a long clip one step is hundreds of windows.
        windows_per_step = len(schedule.base_windows())
        for step_index, timestep in enumerate(timesteps):
            averager = WindowAverager((guided_batch, *latents.shape[1:]), device, dtype)
            for window_index, window in enumerate(schedule.windows_at(step_index)):
                model_input = latents[:, :, window]  # [1, 4, f, h, w]
                window_audio = audio[:, window]  # [1, f, 50, 384]
                if do_classifier_free_guidance:
                    model_input = torch.cat([model_input, model_input])
                    window_audio = torch.cat([torch.zeros_like(window_audio), window_audio])
                model_input = self.scheduler.scale_model_input(model_input, timestep)
                velocity = self.denoising_unet(
                    model_input,
                    timestep,
                    audio_features=window_audio,
                    face_features=face,
                    reference_banks=banks,
                    uncond_first_half=do_classifier_free_guidance,
                )  # [guided_batch, 4, f, h, w]
                averager.add(window, velocity_through_clean_estimate(velocity, model_input, alphas_cumprod[timestep]))
                report(
                    progress,
                    "denoising",
                    step_index * windows_per_step + window_index + 1,
                    len(timesteps) * windows_per_step,
                    f"step {step_index + 1}/{len(timesteps)}, t={int(timestep)}",
                )

            model_output = averager.average()  # [guided_batch, 4, F, h, w]
            if do_classifier_free_guidance:
                unconditional, conditional = model_output.chunk(2)
                model_output = unconditional + guidance_scale * (conditional - unconditional)
            stepped = cast(DDIMSchedulerOutput, self.scheduler.step(model_output, timestep, latents, eta=0.0))
            latents = stepped.prev_sample

            if callback_on_step_end is not None:
                callback_on_step_end(DenoisingStep(step_index, int(timestep), model_output, latents))

        # 8. Decode.
        if output_type == "latent":
            return EchoMimicPipelineOutput(latents=latents, video=None)
        return EchoMimicPipelineOutput(latents=latents, video=self.decode_latents(latents, progress))
