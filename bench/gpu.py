"""EchoMimic throughput on a CUDA device with no weights: full-size networks with random weights, fp16.

    python -m bench.gpu [--profiles quality,realtime] [--backends eager,compile] [--batches 1,2] [--windows 3]
                        [--layouts contiguous,channels-last] [--every-layout] [--live-window]
    python -m bench.gpu --tiny        # the same code on tiny networks on the CPU, in seconds (run by the tests)

Needs only torch and diffusers. For every profile, backend, batch (sessions whose windows run together) and memory
layout of the UNet and decoder convolutions it renders windows as the live renderer does and times each stage with
CUDA events:

    audio      whisper features of each session's window, from its rolling audio history as a live session takes them
               (`RollingAudioFeatures`: one 30 s segment through the encoder per window)
    sampling   the live sampler itself (`echomimic.live_sampler.denoise_windows`) over context + new frames: the
               profile's steps, the context pinned, each window's noise drawn on the host as the live renderer draws it
    decode     the new frames through the profile's decoder (SD VAE or tiny autoencoder), one batched call
    colour     [0, 1] float to uint8 RGB on the device, copied to pinned host memory

and reports fps per session, the UNet's achieved TFLOP/s and its share of an fp16 matmul peak measured in the same
run, GPU memory per session over the weights, and the host synchronisations one window's sampling and decoding make
(counted under `torch.cuda.set_sync_debug_mode("warn")` in one extra untimed window; n/a on the CPU). The TFLOP are
those torch's FLOP counter sees while the sampler denoises one window with the eager UNet (once, untimed), so they
follow whatever the sampler calls. It prints markdown rows for `bench/RESULTS.md` naming the GPU, torch version,
backend and layout.

One device run must stay short (the H200 it targets is lent for minutes): eager cases run first, torch.compile cases
last (each compiles for a minute or two), profiles and session counts in the order given; layouts other than the
first are measured only for eager at the first session count unless `--every-layout` is given; a case that would
start after `--deadline` seconds is skipped and listed, and a case that fails (out of memory, a compiler error) is
listed with its error while the others go on.

A profile's own window (12 new + 3 context frames) is what offline rendering and the FLOP table use; live sessions
run the renderer's shorter latency window (4 + 2), which costs more per frame. `--live-window` adds each profile at
that window too, right after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from torch import nn

from echomimic.acceleration import full_size
from echomimic.acceleration.backend_names import Backend
from echomimic.acceleration.backends import AcceleratedUNet, BackendChoice, compile_window_programs
from echomimic.acceleration.channels_last import convert_to_channels_last
from echomimic.acceleration.flops import counted_tflop
from echomimic.acceleration.profiles import PROFILES, GenerationProfile
from echomimic.acceleration.tiny_decoder import FrameDecoder
from echomimic.audio_features import SAMPLE_RATE
from echomimic.live_sampler import DenoisingUNet, PinnedFrames, WindowInputs, denoise_windows
from echomimic.models import EchoUNet3DConditionModel, FaceLocator, ReferenceUNet2DConditionModel
from echomimic.models.whisper_encoder import WhisperAudioEncoder
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline, ReferenceConditioning
from echomimic.rolling_audio_features import RollingAudioFeatures
from echomimic.schedulers import make_ddim_scheduler
from echomimic.weights import CAST_METHODS, INFERENCE_V2_UNET_ADDITIONAL_KWARGS

FPS = 24.0
LOOKAHEAD_SECONDS = 0.2
GIB = 2**30
GUIDANCE_SCALE = 1.0
"""As the live renderer samples (both profiles)."""
CONTIGUOUS, CHANNELS_LAST = "contiguous", "channels-last"
LAYOUTS = (CONTIGUOUS, CHANNELS_LAST)
LIVE_WINDOW_FRAMES, LIVE_WINDOW_CONTEXT = 4, 2
"""`echomimic.streaming_renderer.LIVE_WINDOW`, which this script does not import: the device it runs on may lack the
streaming package's dependencies."""
COMPILE_RESERVE_SECONDS = 150.0
"""A torch.compile case starts only with this much of the deadline left: inductor compiles the UNet for a minute or
two before the first window."""

TINY_UNET_WIDTHS = (32, 64, 64, 64)
TINY_VAE: dict[str, Any] = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1}
TINY_TAESD: dict[str, Any] = {
    "encoder_block_out_channels": [8, 8, 8, 8],
    "decoder_block_out_channels": [8, 8, 8, 8],
    "num_encoder_blocks": [1, 1, 1, 1],
    "num_decoder_blocks": [1, 1, 1, 1],
}
TINY_WHISPER: dict[str, Any] = {"n_audio_layer": 1}
TINY_SIZE = 64


@dataclass(frozen=True)
class Networks:
    denoising_unet: EchoUNet3DConditionModel
    reference_unet: ReferenceUNet2DConditionModel
    face_locator: FaceLocator
    vae: AutoencoderKL
    tiny_autoencoder: AutoencoderTiny
    audio_encoder: WhisperAudioEncoder
    pipeline: EchoMimicPipeline
    """Around the networks above, with the live scheduler: what `denoise_windows` takes its scheduler, device and
    dtype from."""

    def decoder(self, profile: GenerationProfile) -> FrameDecoder:
        return FrameDecoder.sd_vae(self.vae) if profile.decoder == "vae" else FrameDecoder.tiny(self.tiny_autoencoder)


@dataclass(frozen=True)
class Case:
    profile: GenerationProfile
    backend: Backend
    batch: int
    layout: str = CONTIGUOUS
    """Of the UNet's and the decoder's convolutions: one of `LAYOUTS`."""


@dataclass(frozen=True)
class CaseResult:
    case: Case
    stage_ms: dict[str, float]
    """Mean milliseconds per window for each stage."""
    first_window_s: float
    """The untimed first window, torch.compile's compilation included."""
    sampling_tflop_per_window: float
    """What torch's FLOP counter saw while the sampler denoised one window (the UNet calls, almost all of it)."""
    peak_memory_over_weights: float | None
    """Bytes; None on the CPU."""
    host_syncs: int | None
    """Host synchronisations in one window's sampling and decoding; None on the CPU."""

    @property
    def window_ms(self) -> float:
        return sum(self.stage_ms.values())

    @property
    def fps_per_session(self) -> float:
        return self.case.profile.window_frames / (self.window_ms / 1000)

    @property
    def unet_tflops(self) -> float:
        return self.sampling_tflop_per_window / (self.stage_ms["sampling"] / 1000)


class StageClock:
    """Marks where each stage of a window starts; CUDA events on a GPU (no sync until `finish`), wall time on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._marks: list[tuple[str, torch.cuda.Event | float]] = []

    def mark(self, stage: str) -> None:
        self._marks.append((stage, self._now()))

    def finish(self) -> dict[str, float]:
        """Milliseconds per stage."""
        end = self._now()
        if self._cuda:
            torch.cuda.synchronize()
        times = [moment for _, moment in self._marks] + [end]
        stages = [stage for stage, _ in self._marks]
        return {stage: _elapsed_ms(start, stop) for stage, start, stop in zip(stages, times, times[1:], strict=False)}

    def _now(self) -> torch.cuda.Event | float:
        if not self._cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        event.record()
        return event


def _elapsed_ms(start: torch.cuda.Event | float, stop: torch.cuda.Event | float) -> float:
    if isinstance(start, float) and isinstance(stop, float):
        return (stop - start) * 1000
    assert isinstance(start, torch.cuda.Event) and isinstance(stop, torch.cuda.Event)
    return float(start.elapsed_time(stop))


def build_networks(device: torch.device, dtype: torch.dtype, tiny: bool) -> Networks:
    """Every network the live path runs, random weights, eval mode, no gradients."""
    torch.manual_seed(0)
    with device:
        if tiny:
            base = full_size.SD15_UNET_CONFIG | {"block_out_channels": list(TINY_UNET_WIDTHS)}
            unet: EchoUNet3DConditionModel = EchoUNet3DConditionModel.from_base_config(
                base, INFERENCE_V2_UNET_ADDITIONAL_KWARGS
            )
            reference: ReferenceUNet2DConditionModel = ReferenceUNet2DConditionModel(
                block_out_channels=TINY_UNET_WIDTHS
            )
            locator = FaceLocator(conditioning_embedding_channels=TINY_UNET_WIDTHS[0])
            vae: AutoencoderKL = AutoencoderKL.from_config(full_size.SD_VAE_FT_MSE_CONFIG | TINY_VAE)
            taesd = AutoencoderTiny(**TINY_TAESD)
            whisper = WhisperAudioEncoder(**TINY_WHISPER)
        else:
            unet, reference, locator = full_size.denoising_unet(), full_size.reference_unet(), full_size.face_locator()
            vae, taesd, whisper = full_size.sd_vae(), full_size.tiny_autoencoder(), WhisperAudioEncoder()
    modules: list[nn.Module] = [unet, reference, locator, vae, taesd, whisper]
    for module in modules:
        # half()/float() rather than to(dtype): diffusers' to() warns about modules it would keep in float32
        getattr(module, CAST_METHODS[dtype])().eval().requires_grad_(False)
    pipeline = EchoMimicPipeline(vae, reference, unet, locator, None, make_ddim_scheduler())
    return Networks(unet, reference, locator, vae, taesd, whisper, pipeline)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, size: int, seconds: float) -> float:
    """TFLOP/s of back-to-back square matrix products of random data, the best of a few timed rounds."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    flop_per_product = 2 * size**3
    repeats = 1
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        clock = StageClock(device)
        clock.mark("matmul")
        for _ in range(repeats):
            torch.mm(a, b)
        elapsed_ms = clock.finish()["matmul"]
        best = max(best, flop_per_product * repeats / (elapsed_ms / 1000) / 1e12)
        repeats = min(repeats * 2, 64)
    return best


def run_case(case: Case, networks: Networks, device: torch.device, dtype: torch.dtype, windows: int) -> CaseResult:
    """Time `windows` windows of `case` after one untimed first window, its convolutions in the case's layout."""
    decoder = networks.decoder(case.profile)
    conversions = (
        [convert_to_channels_last(network) for network in (networks.denoising_unet, decoder.network)]
        if case.layout == CHANNELS_LAST
        else []
    )
    try:
        return _run_case(case, networks, decoder, device, dtype, windows)
    finally:
        for conversion in conversions:  # the next case finds the networks contiguous
            conversion.undo()


def _run_case(
    case: Case,
    networks: Networks,
    decoder: FrameDecoder,
    device: torch.device,
    dtype: torch.dtype,
    windows: int,
) -> CaseResult:
    profile, batch = case.profile, case.batch
    latent = profile.latent_size
    weights_bytes = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    # Per avatar, once, as the live renderer prepares it: banks rounded through fp16 and projected, face features.
    # One portrait for every session; each session draws its own noise.
    with torch.no_grad():
        banks = networks.reference_unet(torch.randn(1, 4, latent, latent, device=device, dtype=dtype), 0)
        banks = networks.denoising_unet.project_banks(banks.rounded_to_fp16())
        mask = torch.zeros(1, 1, 1, profile.size, profile.size, device=device, dtype=dtype)
        mask[..., profile.size // 4 : 3 * profile.size // 4, profile.size // 4 : 3 * profile.size // 4] = 1
        face = networks.face_locator(mask)  # [1, C0, 1, h, w]
    portrait_latents = torch.randn(1, 4, latent, latent, device=device, dtype=dtype)
    reference = ReferenceConditioning(latents=portrait_latents, banks=banks, face_features=face)
    frames, context = profile.frames_per_window, profile.context_frames
    shown = torch.randn(1, 4, context, latent, latent, device=device, dtype=dtype)
    pinned = PinnedFrames(list(range(context)), shown) if context else None
    noises = [torch.randn(1, 4, frames, latent, latent) for _ in range(batch)]

    unet: DenoisingUNet = networks.denoising_unet
    if case.backend == Backend.COMPILE:
        choice = BackendChoice(Backend.COMPILE, "measured")
        compiled = compile_window_programs(networks.denoising_unet)
        unet = AcceleratedUNet(networks.denoising_unet, choice, any_window_programs=compiled, clone_outputs=True)
    seconds_of_audio = frames / FPS + LOOKAHEAD_SECONDS
    histories = [RollingAudioFeatures(networks.audio_encoder, FPS) for _ in range(batch)]
    for history in histories:
        history.write(0, (0.1 * torch.randn(math.ceil(seconds_of_audio * SAMPLE_RATE))).numpy())
    host_frames = torch.empty(
        (batch * profile.window_frames, profile.size, profile.size, 3),
        dtype=torch.uint8,
        pin_memory=device.type == "cuda",
    )

    def window_audio() -> list[torch.Tensor]:
        with torch.no_grad():
            return [history.chunks(0, frames) for history in histories]  # [F, tokens, D] each

    def sample(audio: list[torch.Tensor], denoiser: DenoisingUNet) -> torch.Tensor:
        inputs = [
            WindowInputs(reference, features, noise, pinned) for features, noise in zip(audio, noises, strict=True)
        ]
        results = denoise_windows(
            networks.pipeline,
            denoiser,
            inputs,
            profile.num_inference_steps,
            GUIDANCE_SCALE,
            profile.deep_feature_interval,
        )
        return torch.cat([latents for latents in results if latents is not None])  # [B, 4, F, h, w]; none stops

    def decode(latents: torch.Tensor) -> torch.Tensor:
        return decoder.decode(latents[:, :, context:])  # [(B new), 3, H, W]

    def render_window() -> dict[str, float]:
        clock = StageClock(device)
        clock.mark("audio")
        audio = window_audio()
        clock.mark("sampling")
        latents = sample(audio, unet)
        clock.mark("decode")
        pictures = decode(latents)
        clock.mark("colour")
        with torch.no_grad():
            rgb = (pictures * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            host_frames.copy_(rgb, non_blocking=True)
        return clock.finish()

    audio = window_audio()
    sampling_tflop = counted_tflop(lambda: sample(audio, networks.denoising_unet))
    started = time.perf_counter()
    render_window()
    first_window_s = time.perf_counter() - started
    host_syncs = count_host_syncs(lambda: decode(sample(audio, unet)), device)
    stage_ms = [render_window() for _ in range(windows)]
    peak = torch.cuda.max_memory_allocated() - weights_bytes if device.type == "cuda" else None
    return CaseResult(
        case=case,
        stage_ms={stage: sum(times[stage] for times in stage_ms) / windows for stage in stage_ms[0]},
        first_window_s=first_window_s,
        sampling_tflop_per_window=sampling_tflop,
        peak_memory_over_weights=None if peak is None else float(peak),
        host_syncs=host_syncs,
    )


def count_host_syncs(work: Callable[[], object], device: torch.device) -> int | None:
    """How many times `work` makes the host wait for the GPU, as torch's sync debug mode reports them (blocking
    copies, `.item()`, `.tolist()` ...); None on the CPU, where there is nothing to wait for."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def with_live_windows(profiles: Sequence[GenerationProfile]) -> list[GenerationProfile]:
    """Each profile, followed by the same at the live renderer's window."""
    return [
        variant
        for profile in profiles
        for variant in (
            profile,
            dataclasses.replace(
                profile,
                name=f"{profile.name}, live window",
                window_frames=LIVE_WINDOW_FRAMES,
                context_frames=LIVE_WINDOW_CONTEXT,
            ),
        )
    ]


def cases_for(
    profiles: Sequence[GenerationProfile],
    backends: Sequence[Backend],
    batches: Sequence[int],
    layouts: Sequence[str] = (CONTIGUOUS,),
    every_layout: bool = False,
) -> list[Case]:
    """In the order given, backend by backend, then session count by session count, then profile, the layouts of one
    profile side by side: put what matters most first, since the deadline cuts from the end. Layouts after the first
    only for eager at the first session count, unless `every_layout`."""
    return [
        Case(profile, backend, batch, layout)
        for backend in backends
        for batch in batches
        for profile in profiles
        for layout in layouts
        if every_layout or layout == layouts[0] or (backend == Backend.EAGER and batch == batches[0])
    ]


def _result_row(result: CaseResult, gpu: str, matmul_peak: float) -> str:
    case = result.case
    stages = " / ".join(f"{result.stage_ms[stage]:.1f}" for stage in ("audio", "sampling", "decode", "colour"))
    memory = (
        "n/a"
        if result.peak_memory_over_weights is None
        else f"{result.peak_memory_over_weights / case.batch / GIB:.2f}"
    )
    syncs = "n/a" if result.host_syncs is None else str(result.host_syncs)
    return (
        f"| {gpu} | {torch.__version__} | {case.profile.name} | {case.backend} | {case.layout} | {case.batch} | "
        f"{result.window_ms:.1f} ({stages}) | {result.fps_per_session:.1f} | {result.unet_tflops:.3g} | "
        f"{100 * result.unet_tflops / matmul_peak:.0f}% | {memory} | {syncs} | {result.first_window_s:.1f} |"
    )


ROW_HEADER = (
    "| GPU | torch | profile | backend | layout | sessions | ms per window (audio / sampling / decode / colour) | "
    "fps per session | UNet TFLOP/s | of matmul peak (same dtype) | GiB per session over weights | "
    "host syncs in sampling+decode | first window s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _describe(case: Case) -> str:
    return f"{case.profile.name}, {case.backend}, {case.layout}, {case.batch} session(s)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny networks on the CPU at 64x64 (a smoke run)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated profile names")
    parser.add_argument(
        "--backends", default=None, help="comma-separated: eager, compile (default both; eager only with --tiny)"
    )
    parser.add_argument("--batches", default="1,2", help="comma-separated session counts batched per window")
    parser.add_argument(
        "--layouts",
        default=",".join(LAYOUTS),
        help="comma-separated memory layouts of the UNet's and decoder's convolutions: contiguous, channels-last "
        "(default both; layouts after the first run for eager at the first session count only)",
    )
    parser.add_argument(
        "--every-layout", action="store_true", help="run every layout for every backend and session count too"
    )
    parser.add_argument(
        "--live-window",
        action="store_true",
        help=f"also run each profile at the live renderer's window ({LIVE_WINDOW_FRAMES} new + "
        f"{LIVE_WINDOW_CONTEXT} context frames)",
    )
    parser.add_argument("--windows", type=int, default=3, help="timed windows per case, after one untimed")
    parser.add_argument("--deadline", type=float, default=330.0, help="start no case after this many seconds")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    device = torch.device("cpu" if args.tiny else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench.gpu: no CUDA device here; use --tiny for the CPU smoke run", file=sys.stderr)
        return 1
    dtype = torch.float32 if args.tiny else torch.float16
    profiles = [PROFILES[name] for name in args.profiles.split(",")]
    if args.tiny:
        profiles = [dataclasses.replace(profile, size=TINY_SIZE) for profile in profiles]
    if args.live_window:
        profiles = with_live_windows(profiles)
    backends = [Backend(name) for name in (args.backends or ("eager" if args.tiny else "eager,compile")).split(",")]
    batches = [int(batch) for batch in args.batches.split(",")]
    layouts = args.layouts.split(",")
    unknown = [layout for layout in layouts if layout not in LAYOUTS]
    if unknown:
        parser.error(f"unknown layout {unknown[0]!r}; choose from {', '.join(LAYOUTS)}")

    gpu = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    )
    print(
        f"device: {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); diffusers {diffusers.__version__}; "
        f"Python {platform.python_version()}"
    )
    peak_size, peak_seconds = (256, 0.2) if args.tiny else (8192, 3.0)
    fp16_peak = measure_matmul_peak(device, dtype, peak_size, peak_seconds)
    bf16_peak = measure_matmul_peak(device, torch.bfloat16, peak_size, peak_seconds)
    print(
        f"matmul peak ({peak_size}x{peak_size}): {fp16_peak:.3g} TFLOP/s {str(dtype).removeprefix('torch.')}, "
        f"{bf16_peak:.3g} bfloat16"
    )

    networks = build_networks(device, dtype, args.tiny)
    if device.type == "cuda":
        print(f"weights on the device: {torch.cuda.memory_allocated() / GIB:.2f} GiB")
    print(ROW_HEADER)
    skipped = []
    for case in cases_for(profiles, backends, batches, layouts, args.every_layout):
        elapsed = time.perf_counter() - started
        reserve = COMPILE_RESERVE_SECONDS if case.backend == Backend.COMPILE else 0.0
        if elapsed + reserve > args.deadline:
            skipped.append(case)
            continue
        try:
            result = run_case(case, networks, device, dtype, args.windows)
        except Exception as error:  # one failed case (out of memory, a compiler error) must not lose the others
            print(f"failed: {_describe(case)}: {error!r}"[:2000], flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        print(_result_row(result, gpu, fp16_peak), flush=True)
    for case in skipped:
        print(f"skipped (deadline): {_describe(case)}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
