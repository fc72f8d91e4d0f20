"""How the denoising UNet runs: Torch-TensorRT engines, torch.compile with CUDA graphs, or eager; best first.

    tensorrt   engines built by `echolive compile` for the exact window shapes, loaded from the engine cache
    compile    torch.compile (inductor) with CUDA graphs; each new window shape compiles on first use (about a minute)
    eager      the PyTorch module as it is (fp16 and SDPA on a GPU)

`accelerate_denoising_unet` picks the best one this machine can run ("auto") or the one asked for, logs which and
why, and returns an `AcceleratedUNet`: a module with the UNet's own call signature, `config`, `dtype`, `device` and
`project_banks`, so it replaces `pipeline.denoising_unet` with no other change. A call it has no program for
(another window shape, classifier-free guidance, no face features) runs eagerly, so a backend never changes what is
computed, only how fast.
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
from echomimic.acceleration.window_program import WindowProgram, WindowShape, flatten_window_inputs
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


def compile_window_program(
    unet: EchoUNet3DConditionModel, backend: str = "inductor", mode: str | None = "reduce-overhead"
) -> Callable[..., torch.Tensor]:
    """`WindowProgram` under torch.compile; "reduce-overhead" is inductor with CUDA graphs. One graph per window
    shape (`dynamic=False`), the whole UNet in it (`fullgraph=True`)."""
    program: Callable[..., torch.Tensor] = torch.compile(
        WindowProgram(unet).eval(), backend=backend, mode=mode, fullgraph=True, dynamic=False
    )
    return program


class AcceleratedUNet(nn.Module):
    """The denoising UNet behind a backend, with the UNet's call signature.

    `window_programs` run the window shapes they were built for (TensorRT engines); `any_window_program` runs any
    shape (torch.compile). Their outputs are cloned when `clone_outputs` is set, because CUDA graphs overwrite
    them on the next replay.
    """

    def __init__(
        self,
        unet: EchoUNet3DConditionModel,
        choice: BackendChoice,
        window_programs: Mapping[WindowShape, Callable[..., torch.Tensor]] | None = None,
        any_window_program: Callable[..., torch.Tensor] | None = None,
        clone_outputs: bool = False,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.choice = choice
        self._window_programs = dict(window_programs or {})
        self._any_window_program = any_window_program
        self._clone_outputs = clone_outputs
        self._eager_shapes_logged: set[WindowShape] = set()

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
        """The shapes with a fixed program (engines); empty for the other backends."""
        return sorted(self._window_programs)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        audio_features: torch.Tensor,
        face_features: torch.Tensor | None,
        reference_banks: ReferenceBanks,
        uncond_first_half: bool = False,
    ) -> torch.Tensor:
        """As `EchoUNet3DConditionModel.forward`."""
        shape = WindowShape.of_sample(sample)
        program = self._window_programs.get(shape, self._any_window_program)
        if program is None or face_features is None or uncond_first_half:
            self._log_eager_once(shape)
            output: torch.Tensor = self.unet(
                sample, timestep, audio_features, face_features, reference_banks, uncond_first_half
            )
            return output
        inputs = flatten_window_inputs(self.unet, sample, timestep, audio_features, face_features, reference_banks)
        output = program(*inputs)
        return output.clone() if self._clone_outputs else output

    def _log_eager_once(self, shape: WindowShape) -> None:
        if self.choice.backend != Backend.EAGER and shape not in self._eager_shapes_logged:
            self._eager_shapes_logged.add(shape)
            logger.info("denoising UNet: no %s program for %s; running it eagerly", self.choice.backend, shape)


def accelerate_denoising_unet(
    unet: EchoUNet3DConditionModel,
    shapes: Sequence[WindowShape],
    *,
    requested: str = AUTO,
    weights: str | None = None,
    engine_dir: Path | None = None,
    channels_last: bool = False,
) -> AcceleratedUNet:
    """Put the UNet behind the best backend for `shapes` (the window shapes the renderer will run).

    `weights` is the weights folder's fingerprint (`engine_cache.weights_fingerprint`); TensorRT engines are looked
    up for it in `engine_dir` (default: the user's cache). The choice and its reason are logged at INFO and kept in
    `.choice`. `channels_last` converts the UNet's convolutions in place first (`echomimic.acceleration.channels_last`).
    """
    cache = EngineCache(engine_dir or default_engine_dir())
    choice = backend_for(requested, shapes, weights, cache, unet.dtype)
    logger.info("denoising UNet backend: %s", choice)
    if channels_last:
        converted = convert_to_channels_last(unet)
        logger.info("denoising UNet: %d convolutions in channels-last", len(converted.convolutions))
    if choice.backend == Backend.TENSORRT and weights is not None:
        engines = {shape: load_engine(_found(cache, weights, shape, unet.dtype)) for shape in shapes}
        return AcceleratedUNet(unet, choice, window_programs=engines)
    if choice.backend == Backend.COMPILE:
        return AcceleratedUNet(unet, choice, any_window_program=compile_window_program(unet), clone_outputs=True)
    return AcceleratedUNet(unet, choice)


def backend_for(
    requested: str, shapes: Sequence[WindowShape], weights: str | None, cache: EngineCache, dtype: torch.dtype
) -> BackendChoice:
    """What `accelerate_denoising_unet` would run for these window shapes, without building anything."""
    tensorrt_problem = tensorrt_unavailable_reason()
    if tensorrt_problem is None and requested in (AUTO, Backend.TENSORRT):
        tensorrt_problem = _missing_engines(shapes, weights, cache, dtype)
    problems = {Backend.TENSORRT: tensorrt_problem, Backend.COMPILE: compile_unavailable_reason()}
    return choose_backend(requested, problems)


def _missing_engines(
    shapes: Sequence[WindowShape], weights: str | None, cache: EngineCache, dtype: torch.dtype
) -> str | None:
    if weights is None:
        return "no weights folder to match engines against"
    missing = [shape for shape in shapes if cache.find(engine_key(weights, shape, dtype)) is None]
    if missing:
        return (
            f"no engine for {len(missing)} of {len(shapes)} window shapes (e.g. {missing[0]}) in {cache.directory}; "
            "build them with `echolive compile --weights DIR`"
        )
    return None


def _found(cache: EngineCache, weights: str, shape: WindowShape, dtype: torch.dtype) -> Path:
    path = cache.find(engine_key(weights, shape, dtype))
    if path is None:
        raise BackendUnavailableError(f"the engine for {shape} vanished from {cache.directory}")
    return path
