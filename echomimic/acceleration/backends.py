"""How the denoising UNet runs: Torch-TensorRT engines, torch.compile with CUDA graphs, or eager; best first.

    tensorrt   engines built by `echolive compile` for the exact window shapes, loaded from the engine cache
    compile    torch.compile (inductor) with CUDA graphs; each new window shape compiles on first use (about a minute)
    eager      the PyTorch module as it is (fp16 and SDPA on a GPU)

`accelerate_denoising_unet` picks the best one this machine can run ("auto") or the one asked for, logs which and
why, and returns an `AcceleratedUNet`: a module with the UNet's own call signature, `config`, `dtype`, `device` and
`project_banks`, so it replaces `pipeline.denoising_unet` with no other change. A call it has no program for
(another window shape or UNet pass, classifier-free guidance, no face features) runs eagerly, so a backend never
changes what is computed, only how fast.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echomimic.acceleration.backend_names import AUTO, BACKEND_REQUESTS, Backend
from echomimic.acceleration.channels_last import convert_to_channels_last
from echomimic.acceleration.engine_cache import EngineCache, default_engine_dir
from echomimic.acceleration.tensorrt_engines import engine_key, load_engine, tensorrt_unavailable_reason
from echomimic.acceleration.window_program import UNetPass, WindowProgram, WindowShape, flatten_window_inputs
from echomimic.models.reference_banks import ReferenceBanks
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel

logger = logging.getLogger(__name__)


PREFERENCE = (Backend.TENSORRT, Backend.COMPILE)
"""Tried in this order; eager always works."""

DESCRIPTIONS = {
    Backend.TENSORRT: "Torch-TensorRT engines for the window shapes",
    Backend.COMPILE: "torch.compile (inductor) with CUDA graphs",
    Backend.EAGER: "eager PyTorch",
}


class BackendUnavailableError(ValueError):
    """The backend asked for cannot run on this machine."""


@dataclass(frozen=True, slots=True)
class BackendChoice:
    backend: Backend
    reason: str

    def __str__(self) -> str:
        return f"{self.backend} ({self.reason})"


def choose_backend(requested: str, problems: Mapping[Backend, str | None]) -> BackendChoice:
    """The backend to run, given why each of tensorrt and compile cannot run here (None where it can).

    "auto" takes the first that can run, else eager; a named backend that cannot run raises
    `BackendUnavailableError` with the reason.
    """
    if requested not in BACKEND_REQUESTS:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(BACKEND_REQUESTS)}")
    if requested == Backend.EAGER:
        return BackendChoice(Backend.EAGER, f"{DESCRIPTIONS[Backend.EAGER]}, as asked")
    candidates = PREFERENCE if requested == AUTO else (Backend(requested),)
    passed_over: list[str] = []
    for backend in candidates:
        problem = problems.get(backend)
        if problem is None:
            reason = DESCRIPTIONS[backend]
            return BackendChoice(backend, f"{reason}; not {'; not '.join(passed_over)}" if passed_over else reason)
        if requested != AUTO:
            raise BackendUnavailableError(f"the {backend} backend cannot run here: {problem}")
        passed_over.append(f"{backend}: {problem}")
    return BackendChoice(Backend.EAGER, f"{DESCRIPTIONS[Backend.EAGER]}; not {'; not '.join(passed_over)}")


def compile_unavailable_reason() -> str | None:
    """Why torch.compile with CUDA graphs cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        return "no CUDA device for CUDA graphs"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (inductor generates its CUDA kernels with it)"
    return None


WindowProgramCall = Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
"""A `WindowProgram` pass, compiled: the same flat inputs and outputs."""


def compile_window_programs(
    unet: EchoUNet3DConditionModel, backend: str = "inductor", mode: str | None = "reduce-overhead"
) -> dict[UNetPass, WindowProgramCall]:
    """Every `WindowProgram` pass under torch.compile; "reduce-overhead" is inductor with CUDA graphs. One graph
    per window shape (`dynamic=False`), the whole pass in it (`fullgraph=True`). Each compiles on its first call, so
    a pass the profile never calls costs nothing."""
    return {
        unet_pass: torch.compile(
            WindowProgram(unet, unet_pass).eval(), backend=backend, mode=mode, fullgraph=True, dynamic=False
        )
        for unet_pass in UNetPass
    }


ProgramKey = tuple[UNetPass, WindowShape]


class AcceleratedUNet(nn.Module):
    """The denoising UNet behind a backend, with the UNet's call signature.

    `window_programs` run the pass and window shape they were built for (TensorRT engines); `any_window_programs`
    run their pass at any shape (torch.compile). Their outputs are cloned when `clone_outputs` is set, because CUDA
    graphs overwrite them on the next replay.
    """

    def __init__(
        self,
        unet: EchoUNet3DConditionModel,
        choice: BackendChoice,
        window_programs: Mapping[ProgramKey, WindowProgramCall] | None = None,
        any_window_programs: Mapping[UNetPass, WindowProgramCall] | None = None,
        clone_outputs: bool = False,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.choice = choice
        self._window_programs = dict(window_programs or {})
        self._any_window_programs = dict(any_window_programs or {})
        self._clone_outputs = clone_outputs
        self._eager_calls_logged: set[ProgramKey] = set()

    @property
    def config(self) -> Any:
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = self.unet.dtype
        return dtype

    @property
    def device(self) -> torch.device:
        device: torch.device = self.unet.device
        return device

    @property
    def bank_order(self) -> list[str]:
        return self.unet.bank_order

    def project_banks(self, banks: ReferenceBanks) -> ReferenceBanks:
        """As `EchoUNet3DConditionModel.project_banks` (the renderer projects each portrait's banks once)."""
        return self.unet.project_banks(banks)

    @property
    def window_shapes(self) -> list[WindowShape]:
        """The shapes with a fixed program of the full pass (engines); empty for the other backends."""
        return sorted(shape for unet_pass, shape in self._window_programs if unet_pass == UNetPass.FULL)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
        deep_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """As `EchoUNet3DConditionModel.forward`."""
        unet_pass = UNetPass.FULL if deep_features is None else UNetPass.REUSING_DEEP_FEATURES
        program = self._program(unet_pass, sample, face_features, uncond_first_half)
        if program is None or face_features is None:
            output: torch.Tensor = self.unet(
                sample, timestep, audio_features, face_features, reference_banks, uncond_first_half, deep_features
            )
            return output
        inputs = flatten_window_inputs(self.unet, sample, timestep, audio_features, face_features, reference_banks)
        output = program(*inputs) if deep_features is None else program(*inputs, deep_features)
        return output.clone() if self._clone_outputs else output

    def forward_keeping_deep_features(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `EchoUNet3DConditionModel.forward_keeping_deep_features`."""
        program = self._program(UNetPass.KEEPING_DEEP_FEATURES, sample, face_features, uncond_first_half)
        if program is None or face_features is None:
            return self.unet.forward_keeping_deep_features(
                sample, timestep, audio_features, face_features, reference_banks, uncond_first_half
            )
        inputs = flatten_window_inputs(self.unet, sample, timestep, audio_features, face_features, reference_banks)
        output, deep_features = program(*inputs)
        if self._clone_outputs:
            return output.clone(), deep_features.clone()
        return output, deep_features

    def _program(
        self, unet_pass: UNetPass, sample: torch.Tensor, face_features: torch.Tensor | None, uncond_first_half: bool
    ) -> Any:
        """The program for this call, or None (logged once per pass and shape) when it must run eagerly."""
        shape = WindowShape.of_sample(sample)
        program = self._window_programs.get((unet_pass, shape), self._any_window_programs.get(unet_pass))
        if program is not None and face_features is not None and not uncond_first_half:
            return program
        if self.choice.backend != Backend.EAGER and (unet_pass, shape) not in self._eager_calls_logged:
            self._eager_calls_logged.add((unet_pass, shape))
            logger.info(
                "denoising UNet: no %s program for the %s pass at %s; running it eagerly",
                self.choice.backend,
                unet_pass,
                shape,
            )
        return None


def accelerate_denoising_unet(
    unet: EchoUNet3DConditionModel,
    shapes: Sequence[WindowShape],
    *,
    requested: str = AUTO,
    weights: str | None = None,
    engine_dir: Path | None = None,
    deep_feature_interval: int = 1,
    channels_last: bool = False,
) -> AcceleratedUNet:
    """Put the UNet behind the best backend for `shapes` (the window shapes the renderer will run) and the passes
    a sampler with `deep_feature_interval` calls.

    `weights` is the weights folder's fingerprint (`engine_cache.weights_fingerprint`); TensorRT engines are looked
    up for it in `engine_dir` (default: the user's cache). The choice and its reason are logged at INFO and kept in
    `.choice`. `channels_last` converts the UNet's convolutions in place first (`echomimic.acceleration.channels_last`).
    """
    cache = EngineCache(engine_dir or default_engine_dir())
    passes = UNetPass.for_interval(deep_feature_interval)
    choice = backend_for(requested, shapes, weights, cache, unet.dtype, passes)
    logger.info("denoising UNet backend: %s", choice)
    if channels_last:
        converted = convert_to_channels_last(unet)
        logger.info("denoising UNet: %d convolutions in channels-last", len(converted.convolutions))
    if choice.backend == Backend.TENSORRT and weights is not None:
        engines = {
            (unet_pass, shape): load_engine(_found(cache, weights, shape, unet.dtype, unet_pass))
            for unet_pass in passes
            for shape in shapes
        }
        return AcceleratedUNet(unet, choice, window_programs=engines)
    if choice.backend == Backend.COMPILE:
        return AcceleratedUNet(unet, choice, any_window_programs=compile_window_programs(unet), clone_outputs=True)
    return AcceleratedUNet(unet, choice)


def backend_for(
    requested: str,
    shapes: Sequence[WindowShape],
    weights: str | None,
    cache: EngineCache,
    dtype: torch.dtype,
    passes: Sequence[UNetPass] = (UNetPass.FULL,),
) -> BackendChoice:
    """What `accelerate_denoising_unet` would run for these window shapes and UNet passes, without building
    anything."""
    tensorrt_problem = tensorrt_unavailable_reason()
    if tensorrt_problem is None and requested in (AUTO, Backend.TENSORRT):
        tensorrt_problem = _missing_engines(shapes, passes, weights, cache, dtype)
    problems = {Backend.TENSORRT: tensorrt_problem, Backend.COMPILE: compile_unavailable_reason()}
    return choose_backend(requested, problems)


def _missing_engines(
    shapes: Sequence[WindowShape],
    passes: Sequence[UNetPass],
    weights: str | None,
    cache: EngineCache,
    dtype: torch.dtype,
) -> str | None:
    if weights is None:
        return "no weights folder to match engines against"
    wanted = [(unet_pass, shape) for unet_pass in passes for shape in shapes]
    missing = [
        (unet_pass, shape)
        for unet_pass, shape in wanted
        if cache.find(engine_key(weights, shape, dtype, unet_pass)) is None
    ]
    if missing:
        unet_pass, shape = missing[0]
        return (
            f"no engine for {len(missing)} of {len(wanted)} passes and window shapes (e.g. the {unet_pass} pass at "
            f"{shape}) in {cache.directory}; build them with `echolive compile --weights DIR`"
        )
    return None


def _found(cache: EngineCache, weights: str, shape: WindowShape, dtype: torch.dtype, unet_pass: UNetPass) -> Path:
    path = cache.find(engine_key(weights, shape, dtype, unet_pass))
    if path is None:
        raise BackendUnavailableError(f"the engine of the {unet_pass} pass for {shape} vanished from {cache.directory}")
    return path
