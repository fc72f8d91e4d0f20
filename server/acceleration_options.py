"""The acceleration options of `serve`, `render` and `bench`: `--profile`, `--taesd`, `--backend`, `--engine-dir`,
`--channels-last`.

Parsing needs no torch: profiles and backend names are plain data, so a machine without the model stack still gets
`--help` and one clear line for a bad value.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from echomimic.acceleration.backend_names import AUTO, BACKEND_REQUESTS
from echomimic.acceleration.profiles import PROFILES, QUALITY, GenerationProfile, profile_by_name


@dataclass(frozen=True, slots=True)
class AccelerationOptions:
    """What the echomimic renderer is asked to run with."""

    profile: GenerationProfile = QUALITY
    taesd_dir: Path | None = None
    """A local taesd-layout folder for the tiny decoder; None decodes with the SD VAE."""
    backend: str = AUTO
    """One of `BACKEND_REQUESTS`; "auto" takes the best this machine can run."""
    engine_dir: Path | None = None
    """Where `echolive compile` left the TensorRT engines; None for the user's cache."""
    channels_last: bool = False
    """Run the denoising UNet and the frame decoder in channels-last memory format (unmeasured, so off)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AccelerationOptions:
        """From a namespace parsed with `add_acceleration_options`."""
        return cls(
            profile=args.profile,
            taesd_dir=args.taesd,
            backend=args.backend,
            engine_dir=args.engine_dir,
            channels_last=args.channels_last,
        )


def parse_profile(name: str) -> GenerationProfile:
    """argparse `type` for `--profile`: the profile, or a usage error naming the known ones."""
    try:
        return profile_by_name(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_profile_option(parser: argparse.ArgumentParser, default: GenerationProfile = QUALITY) -> None:
    """`--profile NAME`, parsed into a `GenerationProfile` (`args.profile`)."""
    listing = "; ".join(f"{profile.name}: {profile.summary}" for profile in PROFILES.values())
    parser.add_argument(
        "--profile",
        type=parse_profile,
        default=default,
        metavar="|".join(PROFILES),
        help=f"how much work per frame (default {default.name}). {listing}",
    )


def add_acceleration_options(parser: argparse.ArgumentParser) -> None:
    """`--profile`, `--taesd`, `--backend`, `--engine-dir` and `--channels-last`; read them back with
    `AccelerationOptions.from_args`."""
    add_profile_option(parser)
    parser.add_argument(
        "--taesd",
        type=Path,
        default=None,
        metavar="DIR",
        help="a local taesd-layout AutoencoderTiny folder for the tiny decoder (the EchoMimic release has none; "
        "without it the SD VAE decodes)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_REQUESTS,
        default=AUTO,
        help="how the denoising UNet runs (default auto: TensorRT engines, else torch.compile, else eager)",
    )
    parser.add_argument(
        "--engine-dir", type=Path, default=None, metavar="DIR", help="TensorRT engines (default: ~/.cache/echolive)"
    )
    add_channels_last_option(parser)


def add_channels_last_option(parser: argparse.ArgumentParser) -> None:
    """`--channels-last` (`args.channels_last`)."""
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="run the denoising UNet and the frame decoder in channels-last memory format (for CUDA tensor cores; "
        "off by default until bench/gpu.py --layouts shows it helps)",
    )
