"""FLOPs per output frame of a generation setting, counted on the full-size networks, and the fps they allow.

The networks are built on the meta device (no weights, no memory) and run once under torch's
`FlopCounterMode`, which counts matrix products and convolutions from their shapes (a multiply-add is 2 FLOPs;
normalisations and element-wise work are not counted). For one window of `new + context` frames:

    UNet per frame and step    the denoising UNet on the whole window (reference banks, audio, motion modules) ÷ frames
    reusing per frame and step the same for a step that reuses deep features (only the outermost level runs)
    per output frame           (new + context) ÷ new × (full steps × UNet + other steps × reusing)  +  decoder
    fps bound                  peak TFLOP/s × share ÷ TFLOP per output frame

The banks' key and value projections are counted as the live renderer runs them, once per portrait (not per call):
that removes 0.026 TFLOP per frame and step at 512 from the 1.254 of the official sampler, which projects every bank
for every frame. The reference UNet runs once per avatar and is reported on its own. The counts depend on the size
and, through the motion modules' attention across frames, very slightly on the window length; each is counted once
per process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from torch.utils.flop_counter import FlopCounterMode

from echomimic.acceleration import full_size
from echomimic.acceleration.gpu_peaks import HALF_PEAK
from echomimic.acceleration.profiles import DecoderKind, GenerationProfile
from echomimic.acceleration.window_program import AUDIO_TOKENS_PER_FRAME
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel

TERA = 1e12


@dataclass(frozen=True, slots=True)
class FlopReport:
    """The counted work of a profile, in TFLOP."""

    profile: GenerationProfile
    unet_tflop_per_frame_step: float
    unet_reusing_tflop_per_frame_step: float
    """A step that reuses deep features: the outermost level only."""
    decoder_tflop_per_frame: float
    reference_unet_tflop: float
    """Once per avatar."""

    @property
    def unet_tflop_per_output_frame(self) -> float:
        profile = self.profile
        frames_denoised_per_output_frame = profile.frames_per_window / profile.window_frames
        reusing_steps = profile.num_inference_steps - profile.full_steps
        per_frame = profile.full_steps * self.unet_tflop_per_frame_step
        per_frame += reusing_steps * self.unet_reusing_tflop_per_frame_step
        return frames_denoised_per_output_frame * per_frame

    @property
    def tflop_per_output_frame(self) -> float:
        return self.unet_tflop_per_output_frame + self.decoder_tflop_per_frame

    def fps_bound(self, peak_tflops: float, share: float = 1.0) -> float:
        """Frames per second a GPU of `peak_tflops` could draw running at `share` of its peak."""
        return peak_tflops * share / self.tflop_per_output_frame

    def tflops_needed(self, fps: float) -> float:
        return self.tflop_per_output_frame * fps

    def as_json(self, peaks: dict[str, float]) -> dict[str, object]:
        return {
            "profile": asdict(self.profile),
            "unet_tflop_per_frame_step": self.unet_tflop_per_frame_step,
            "unet_reusing_tflop_per_frame_step": self.unet_reusing_tflop_per_frame_step,
            "unet_tflop_per_output_frame": self.unet_tflop_per_output_frame,
            "decoder_tflop_per_frame": self.decoder_tflop_per_frame,
            "tflop_per_output_frame": self.tflop_per_output_frame,
            "reference_unet_tflop_per_avatar": self.reference_unet_tflop,
            "peak_tflops": peaks,
            "fps_bound": {name: self.fps_bound(peak) for name, peak in peaks.items()},
            "fps_bound_at_half_peak": {name: self.fps_bound(peak, HALF_PEAK) for name, peak in peaks.items()},
        }


def count_flops(profile: GenerationProfile) -> FlopReport:
    """Count `profile` on the full-size networks (a few seconds on a CPU for 512x512; cached per process)."""
    latent = profile.latent_size
    return FlopReport(
        profile=profile,
        unet_tflop_per_frame_step=unet_tflop_per_frame_step(latent, profile.frames_per_window),
        unet_reusing_tflop_per_frame_step=unet_tflop_per_frame_step(
            latent, profile.frames_per_window, reusing_deep_features=True
        ),
        decoder_tflop_per_frame=decoder_tflop_per_frame(latent, profile.decoder),
        reference_unet_tflop=reference_unet_tflop(latent),
    )


def counted_tflop(run: Callable[[], object]) -> float:
    """TFLOP that torch's FLOP counter sees while `run` runs."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        run()
    return counter.get_total_flops() / TERA


@functools.cache
def unet_tflop_per_frame_step(
    latent_size: int, frames: int, projected_banks: bool = True, reusing_deep_features: bool = False
) -> float:
    """One denoising UNet call on a window of `frames` frames at `latent_size`², divided by the frames.

    With `projected_banks` (the live renderer) the banks' key and value projections are done once per portrait and
    not counted; without (the official offline sampler) every call projects every bank once per frame. With
    `reusing_deep_features` the call is one that reuses deep features and runs only the outermost level.
    """
    unet, reference_unet = _meta_denoising_unet(), _meta_reference_unet()
    channels = unet.config["in_channels"]
    with torch.device("meta"):
        banks = reference_unet(torch.empty(1, channels, latent_size, latent_size), 0)
        if projected_banks:
            banks = unet.project_banks(banks)
        sample = torch.empty(1, channels, frames, latent_size, latent_size)
        audio = torch.empty(1, frames, AUDIO_TOKENS_PER_FRAME, unet.config["cross_attention_dim"])
        face = torch.empty(1, unet.config["block_out_channels"][0], 1, latent_size, latent_size)
        timestep = torch.zeros((), dtype=torch.long)
        deep_features = None
        if reusing_deep_features:
            deep_features = torch.empty(frames, unet.deep_feature_channels, latent_size, latent_size)
        return counted_tflop(lambda: unet(sample, timestep, audio, face, banks, deep_features=deep_features)) / frames


@functools.cache
def decoder_tflop_per_frame(latent_size: int, decoder: DecoderKind) -> float:
    network = _meta_sd_vae() if decoder == "vae" else _meta_tiny_autoencoder()
    with torch.device("meta"):
        latents = torch.empty(1, 4, latent_size, latent_size)
        return counted_tflop(lambda: network.decode(latents))


@functools.cache
def reference_unet_tflop(latent_size: int) -> float:
    reference_unet = _meta_reference_unet()
    with torch.device("meta"):
        latents = torch.empty(1, 4, latent_size, latent_size)
        return counted_tflop(lambda: reference_unet(latents, 0))


@functools.cache
def _meta_denoising_unet() -> EchoUNet3DConditionModel:
    with torch.device("meta"):
        return full_size.denoising_unet().eval()


@functools.cache
def _meta_reference_unet() -> ReferenceUNet2DConditionModel:
    with torch.device("meta"):
        return full_size.reference_unet().eval()


@functools.cache
def _meta_sd_vae() -> AutoencoderKL:
    with torch.device("meta"):
        return full_size.sd_vae().eval()


@functools.cache
def _meta_tiny_autoencoder() -> AutoencoderTiny:
    with torch.device("meta"):
        return full_size.tiny_autoencoder().eval()


def format_report(report: FlopReport, peaks: dict[str, float], fps: float = 24.0) -> str:
    """The human-readable `echolive flops` output."""
    profile = report.profile
    decoder_name = "SD VAE" if profile.decoder == "vae" else "tiny autoencoder (taesd)"
    reuse = (
        f", the whole UNet every {profile.deep_feature_interval} steps ({profile.full_steps} of "
        f"{profile.num_inference_steps}), the others reusing deep features"
        if profile.deep_feature_interval > 1
        else ""
    )
    lines = [
        f"EchoMimic at {profile.size}x{profile.size}: {profile.num_inference_steps} steps, "
        f"{profile.window_frames} new + {profile.context_frames} context frames per window, {decoder_name}{reuse}",
        f"  denoising UNet   {report.unet_tflop_per_frame_step:8.3f} TFLOP per frame per step"
        f" ({report.unet_reusing_tflop_per_frame_step:.3f} reusing deep features)"
        f"  -> {report.unet_tflop_per_output_frame:.3f} per output frame",
        f"  decoder          {report.decoder_tflop_per_frame:8.3f} TFLOP per frame",
        f"  total            {report.tflop_per_output_frame:8.3f} TFLOP per output frame"
        f" ({report.tflops_needed(fps):.1f} TFLOP/s at {fps:g} fps)",
        f"  reference UNet   {report.reference_unet_tflop:8.3f} TFLOP once per avatar",
        "",
        f"  {'GPU':<8} {'peak TFLOP/s':>12} {'fps at 100%':>12} {'fps at 50%':>11}",
    ]
    lines += [
        f"  {name:<8} {peak:>12.1f} {report.fps_bound(peak):>12.1f} {report.fps_bound(peak, HALF_PEAK):>11.1f}"
        for name, peak in peaks.items()
    ]
    return "\n".join(lines)
