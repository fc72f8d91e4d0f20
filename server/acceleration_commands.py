"""`echolive flops` and `echolive compile`: the FLOP arithmetic of a generation setting, and TensorRT engines.

Both need the echomimic extra (torch and diffusers), imported only when the command runs; without it, or without a
CUDA device and torch-tensorrt for `compile`, the command says so in one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from echomimic.acceleration.gpu_peaks import GPU_PEAK_TFLOPS
from echomimic.acceleration.profiles import DECODER_KINDS
from echomimic.progress import ProgressEvent
from server.acceleration_options import add_profile_option
from server.renderers import require_echomimic_packages

CUSTOM_GPU = "custom"


def add_flops_command(commands: argparse._SubParsersAction[Any]) -> None:
    flops = commands.add_parser(
        "flops", help="count EchoMimic's work per frame on the full-size networks (no weights) and the fps it allows"
    )
    add_profile_option(flops)
    flops.add_argument("--size", type=int, default=None, help="frame side in pixels (default: the profile's)")
    flops.add_argument("--steps", type=int, default=None, help="denoising steps (default: the profile's)")
    flops.add_argument("--frames", type=int, default=None, help="new frames per window (default: the profile's)")
    flops.add_argument("--context", type=int, default=None, help="context frames per window (default: the profile's)")
    flops.add_argument("--decoder", choices=DECODER_KINDS, default=None, help="vae or tiny (default: the profile's)")
    flops.add_argument(
        "--deep-feature-interval",
        type=int,
        default=None,
        metavar="N",
        help="the whole UNet every N steps, the others reusing its deep features (default: the profile's)",
    )
    flops.add_argument(
        "--gpu", action="append", choices=list(GPU_PEAK_TFLOPS), default=None, help="a GPU to bound (repeatable)"
    )
    flops.add_argument("--peak", type=float, default=None, metavar="TFLOPS", help="bound a GPU of this fp16 peak")
    flops.add_argument("--fps", type=float, default=24.0, help="the frame rate to state the TFLOP/s needed for")
    flops.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def add_compile_command(commands: argparse._SubParsersAction[Any]) -> None:
    compile_ = commands.add_parser(
        "compile", help="build Torch-TensorRT engines of the denoising UNet for a profile's windows (needs CUDA)"
    )
    compile_.add_argument("--weights", type=Path, required=True, help="the EchoMimic v1 weights folder")
    add_profile_option(compile_)
    compile_.add_argument(
        "--batch",
        type=int,
        action="append",
        default=None,
        help="sessions whose windows run together (repeatable; default 1)",
    )
    compile_.add_argument("--engine-dir", type=Path, default=None, help="where to cache them (default ~/.cache)")


def run_flops(args: argparse.Namespace) -> int:
    overrides = {
        "size": args.size,
        "num_inference_steps": args.steps,
        "window_frames": args.frames,
        "context_frames": args.context,
        "decoder": args.decoder,
        "deep_feature_interval": args.deep_feature_interval,
    }
    chosen = {field: value for field, value in overrides.items() if value is not None}
    based_on = args.profile
    summary = f"{based_on.name} with {', '.join(f'{field}={value}' for field, value in chosen.items())}"
    profile = dataclasses.replace(based_on, name="custom", summary=summary, **chosen) if chosen else based_on
    if args.peak is not None and args.peak <= 0:
        raise ValueError(f"--peak must be positive, not {args.peak}")
    names = args.gpu or ([] if args.peak is not None else list(GPU_PEAK_TFLOPS))
    peaks = {name: GPU_PEAK_TFLOPS[name] for name in names}
    if args.peak is not None:
        peaks[CUSTOM_GPU] = args.peak

    require_echomimic_packages()
    from echomimic.acceleration.flops import count_flops, format_report

    report = count_flops(profile)
    print(json.dumps(report.as_json(peaks), indent=2) if args.json else format_report(report, peaks, args.fps))
    return 0


def run_compile(args: argparse.Namespace) -> int:
    require_echomimic_packages()
    from echomimic.acceleration.engine_cache import default_engine_dir
    from echomimic.acceleration.tensorrt_engines import compile_engines_for_weights, tensorrt_unavailable_reason

    unavailable = tensorrt_unavailable_reason()
    if unavailable is not None:
        raise ValueError(f"cannot build TensorRT engines here: {unavailable}")
    batches = args.batch or [1]
    if any(batch < 1 for batch in batches):
        raise ValueError(f"--batch must be at least 1, not {min(batches)}")
    engine_dir = args.engine_dir or default_engine_dir()
    print(f"building {len(batches)} TensorRT engine(s) for the {args.profile.name} profile (minutes each)")
    paths = compile_engines_for_weights(args.weights, args.profile, batches, engine_dir, _print_progress)
    for path in paths:
        print(path)
    return 0


def _print_progress(event: ProgressEvent) -> None:
    print(f"{event.stage} {event.done}/{event.total}: {event.detail}", flush=True)
