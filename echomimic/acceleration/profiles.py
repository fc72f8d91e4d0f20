"""Generation profiles: how much work EchoMimic spends per frame, chosen by FLOP arithmetic (`echolive flops`).

Work per output frame is the denoising UNet's ((new + context) frames ÷ new frames × the UNet per frame over the
window's steps, a reusing step costing only the UNet's outermost level) plus one decoder pass per new frame; the
reference UNet runs once per avatar and is not counted per frame. Figures below are torch's FLOP counter on the
full-size networks as the live renderer runs them (`echomimic.acceleration.flops`, multiply-adds counted as 2):

| profile  | size | steps (whole UNet) | frames (new + context) | decoder      | TFLOP per frame | RTX 4090 fps |
|----------|------|--------------------|------------------------|--------------|-----------------|--------------|
| quality  | 512  | 6 (6)              | 12 + 3                 | SD VAE       | 11.73           | 14.1 / 7.0   |
| realtime | 384  | 4 (2)              | 12 + 3                 | tiny (taesd) | 2.24            | 73.9 / 37.0  |

(RTX 4090 fps at 100% / 50% of its peak, taken as 165.2 dense fp16 TFLOP/s).

`realtime` is chosen to fit 24 fps on an RTX 4090 with margin below half its dense fp16 peak, at the live renderer's
short window too. At 384 the UNet costs 0.631 TFLOP per frame and step instead of 1.228; four steps instead of six
remove another third; the whole UNet runs on every second step only, the others reusing its deep features and
running the outermost level (0.231 TFLOP per frame); and the tiny decoder costs 0.080 instead of 1.406. It keeps the
3 context frames that carry motion across windows. On the tiny fixtures (`bench/profile_levers.py`) reusing deep
features at 4 steps moves the output about as far as dropping to 3 steps does, and removes more work. The tiny
decoder needs a taesd-layout folder that the official EchoMimic release does not ship; without one the SD VAE
decodes and the profile costs 3.56 TFLOP per frame (see `echomimic.acceleration.tiny_decoder`).

The window is part of the profile because it is a lever: context frames are denoised again in every window, so
short windows cost more per frame. The live renderer's latency window (`LIVE_WINDOW`: 4 new + 2 context frames)
costs 13.56 TFLOP per frame at the quality settings, and 2.66 at the realtime settings: 24 fps on an RTX 4090 at
39% of its peak (without deep-feature reuse it would cost 3.86, 56% of the peak).

This module needs no torch: the server parses `--profile` before deciding whether to load any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DecoderKind = Literal["vae", "tiny"]
DECODER_KINDS: tuple[DecoderKind, ...] = ("vae", "tiny")

LATENT_FACTOR = 8
"""Pixels per latent cell (the SD VAE's and taesd's downscale)."""

MOTION_MODULE_SPAN = 32
"""Frames the motion modules' positional table covers (`temporal_position_encoding_max_len` of inference_v2)."""


@dataclass(frozen=True, slots=True)
class GenerationProfile:
    """The levers that set EchoMimic's work per frame."""

    name: str
    summary: str
    """One line for `--help` and logs, with the profile's FLOPs per output frame."""
    size: int
    """Square frame side in pixels, a multiple of 8."""
    num_inference_steps: int
    window_frames: int
    """New frames per window (shown once)."""
    context_frames: int
    """Already-shown frames denoised again before the new ones, so motion continues across windows."""
    decoder: DecoderKind
    """"vae" (the SD VAE of the release) or "tiny" (diffusers' `AutoencoderTiny` from a local taesd folder)."""
    deep_feature_interval: int = 1
    """The whole UNet runs every this many steps; the steps between run only its outermost level and reuse the
    deeper levels' output from the last full step (1: every step in full). Live windows only: the offline sampler's
    windows shift at every step, so there is nothing of the same window to reuse."""

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size % LATENT_FACTOR:
            raise ValueError(
                f"profile {self.name!r}: size must be a positive multiple of {LATENT_FACTOR}, not {self.size}"
            )
        if self.num_inference_steps < 1:
            raise ValueError(f"profile {self.name!r}: needs at least one denoising step")
        if self.window_frames < 1 or self.context_frames < 0:
            raise ValueError(f"profile {self.name!r}: needs at least one new frame and no negative context")
        if self.frames_per_window > MOTION_MODULE_SPAN:
            raise ValueError(
                f"profile {self.name!r}: {self.frames_per_window} frames per window exceed the motion module's "
                f"{MOTION_MODULE_SPAN}"
            )
        if self.deep_feature_interval < 1:
            raise ValueError(f"profile {self.name!r}: deep_feature_interval must be at least 1")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"profile {self.name!r}: decoder must be one of {', '.join(DECODER_KINDS)}")

    @property
    def frames_per_window(self) -> int:
        """Frames in one UNet call: context plus new."""
        return self.window_frames + self.context_frames

    @property
    def latent_size(self) -> int:
        return self.size // LATENT_FACTOR

    @property
    def full_steps(self) -> int:
        """Steps that run the whole UNet; the others reuse deep features."""
        return -(-self.num_inference_steps // self.deep_feature_interval)


QUALITY = GenerationProfile(
    name="quality",
    summary="the official accelerated setting: 512x512, 6 steps, 12 new + 3 context frames, SD VAE "
    "(11.73 TFLOP per frame)",
    size=512,
    num_inference_steps=6,
    window_frames=12,
    context_frames=3,
    decoder="vae",
)

REALTIME = GenerationProfile(
    name="realtime",
    summary="24 fps on an RTX 4090 below half its peak: 384x384, 4 steps with deep features reused every second "
    "step, 12 new + 3 context frames, tiny decoder (2.24 TFLOP per frame)",
    size=384,
    num_inference_steps=4,
    window_frames=12,
    context_frames=3,
    decoder="tiny",
    deep_feature_interval=2,
)

PROFILES: dict[str, GenerationProfile] = {profile.name: profile for profile in (QUALITY, REALTIME)}


def profile_by_name(name: str) -> GenerationProfile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
