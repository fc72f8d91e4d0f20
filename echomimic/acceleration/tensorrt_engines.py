"""Torch-TensorRT engines of the denoising UNet, one per window shape, built ahead of time and cached on disk.

The dynamo path: `torch.export` the `WindowProgram` at the window's exact shapes, `torch_tensorrt.dynamo.compile` the
exported program (the module is already float16, and Torch-TensorRT builds strongly typed networks that keep the
model's dtypes), then `torch_tensorrt.save` it as an exported program holding the engine. Loading gives back a module
with the `WindowProgram` call signature, which `AcceleratedUNet` swaps in for the UNet.

Engines are built by `echolive compile`, not on first use as `MutableTorchTensorRTModule` would: a build takes
minutes, which a live session cannot wait for, and the weights never change at run time, so refitting buys nothing.

torch-tensorrt comes from the `[gpu]` extra and is imported only inside these functions.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from echomimic.acceleration.engine_cache import EngineCache, EngineKey, weights_fingerprint
from echomimic.acceleration.profiles import GenerationProfile
from echomimic.acceleration.window_program import UNetPass, WindowShape, example_window_inputs, export_window_program
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel
from echomimic.progress import ProgressCallback, report
from echomimic.weights import EchoMimicWeights, load_echomimic

INSTALL_HINT = "pip install 'echomimic-live[gpu]'"


def tensorrt_unavailable_reason() -> str | None:
    """Why engines cannot be built or run here, or None when they can."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return f"torch-tensorrt is not installed ({INSTALL_HINT})"
    return None


def engine_key(weights: str, shape: WindowShape, dtype: torch.dtype, unet_pass: UNetPass = UNetPass.FULL) -> EngineKey:
    """The key of an engine for this machine's current CUDA device and library versions."""
    torch_tensorrt = importlib.import_module("torch_tensorrt")
    major, minor = torch.cuda.get_device_capability()
    return EngineKey(
        weights=weights,
        device=f"{torch.cuda.get_device_name()} sm_{major}{minor}",
        dtype=str(dtype).removeprefix("torch."),
        shape=shape,
        unet_pass=str(unet_pass),
        torch_version=torch.__version__,
        compiler_version=str(torch_tensorrt.__version__),
    )


def build_engine(
    unet: EchoUNet3DConditionModel, inputs: tuple[torch.Tensor, ...], path: Path, unet_pass: UNetPass = UNetPass.FULL
) -> None:
    """Export `unet_pass` of the UNet at the shapes of `inputs`, compile it with TensorRT and save it to `path`."""
    torch_tensorrt = importlib.import_module("torch_tensorrt")
    exported = export_window_program(unet, inputs, unet_pass)
    with torch.no_grad():
        compiled = torch_tensorrt.dynamo.compile(exported, arg_inputs=list(inputs), min_block_size=1)
        torch_tensorrt.save(compiled, str(path), output_format="exported_program", arg_inputs=list(inputs))


def load_engine(path: Path) -> Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """The saved engine as a callable with the `WindowProgram` signature of its pass."""
    torch_tensorrt = importlib.import_module("torch_tensorrt")
    program: Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]] = torch_tensorrt.load(str(path)).module()
    return program


def compile_engines(
    unet: EchoUNet3DConditionModel,
    reference_unet: ReferenceUNet2DConditionModel,
    shapes: Sequence[WindowShape],
    cache: EngineCache,
    weights: str,
    progress: ProgressCallback | None = None,
    passes: Sequence[UNetPass] = (UNetPass.FULL,),
) -> list[Path]:
    """An engine for every pass and shape, built unless the cache already holds one; their paths, pass by pass in
    the order of `shapes`."""
    dtype = next(unet.parameters()).dtype
    wanted = [(unet_pass, shape) for unet_pass in passes for shape in shapes]
    paths = []
    for index, (unet_pass, shape) in enumerate(wanted):
        key = engine_key(weights, shape, dtype, unet_pass)
        path = cache.find(key)
        if path is None:
            inputs = example_window_inputs(unet, reference_unet, shape, unet_pass)
            path = cache.store(
                key,
                lambda target: build_engine(unet, inputs, target, unet_pass),  # noqa: B023 (called at once)
            )
        paths.append(path)
        report(progress, "compiling", index + 1, len(wanted), f"{unet_pass} pass, {shape}")
    return paths


def compile_engines_for_weights(
    weights_dir: Path,
    profile: GenerationProfile,
    batches: Sequence[int],
    engine_dir: Path,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """What `echolive compile` does: load the weights on the GPU in float16 and build (or find) an engine for the
    profile's window at each batch size. Raises `ValueError` when engines cannot be built here."""
    unavailable = tensorrt_unavailable_reason()
    if unavailable is not None:
        raise ValueError(f"cannot build TensorRT engines here: {unavailable}")
    weights = weights_fingerprint(EchoMimicWeights.locate(weights_dir))
    pipeline = load_echomimic(weights_dir, device="cuda", dtype=torch.float16, progress=progress)
    shapes = [WindowShape.of_profile(profile, batch) for batch in batches]
    cache = EngineCache(engine_dir)
    passes = UNetPass.for_interval(profile.deep_feature_interval)
    return compile_engines(pipeline.denoising_unet, pipeline.reference_unet, shapes, cache, weights, progress, passes)
