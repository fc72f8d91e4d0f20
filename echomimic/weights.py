"""Loading the official EchoMimic v1 weights folder (the Hugging Face `BadToBest/EchoMimic` layout) into a pipeline.

    weights_dir/
      reference_unet.pth
      denoising_unet_acc.pth    or denoising_unet.pth     (the accelerated file is preferred)
      motion_module_acc.pth     or motion_module.pth
      face_locator.pth
      sd-image-variations-diffusers/unet/config.json   (+ its weights, read only if the files above miss keys)
      sd-vae-ft-mse/config.json + diffusion_pytorch_model.safetensors (or .bin)
      audio_processor/whisper_tiny.pt

Every `.pth` is read with `torch.load(..., weights_only=True)`. A missing file, an unreadable file, a missing key or
a key of the wrong shape raises `WeightsError` naming the file and the key or shape. Models are built from the
folder's configs; what the official code hard-codes (the `inference_v2.yaml` UNet kwargs, the face-locator widths,
the scheduler) is hard-coded here too.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from safetensors import SafetensorError
from safetensors.torch import load_file

from echomimic.audio_features import AudioFeatureExtractor
from echomimic.models.checkpoint_loading import CheckpointMismatchError, load_denoising_unet_state, load_strict
from echomimic.models.face_locator import FaceLocator
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel
from echomimic.models.whisper_encoder import WhisperCheckpointError, load_whisper_tiny_encoder
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline
from echomimic.progress import ProgressCallback, report
from echomimic.schedulers import make_ddim_scheduler

INFERENCE_V2_UNET_ADDITIONAL_KWARGS: dict[str, Any] = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "cross_attention_dim": 384,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
        "temporal_attention_dim_div": 1,
    },
}
"""`unet_additional_kwargs` of the official `configs/inference/inference_v2.yaml`: whisper-width (384) audio
cross-attention, inflated GroupNorm, and one temporal (motion) module after every spatial layer at every
resolution, the mid block included. The weights folder does not carry this file, so it lives here."""

FACE_LOCATOR_CONDITIONING_CHANNELS = 1
FACE_LOCATOR_BLOCK_OUT_CHANNELS = (16, 32, 96, 256)
"""`FaceLocator(320, conditioning_channels=1, block_out_channels=(16, 32, 96, 256))` in the official inference
script; its output width (320) is the UNet's first block width, taken from the UNet config here."""

DEPRECATED_VAE_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
"""`sd-vae-ft-mse` was saved before diffusers renamed its attention projections."""


CAST_METHODS = {torch.float16: "half", torch.bfloat16: "bfloat16", torch.float32: "float"}

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class WeightsError(ValueError):
    """The weights folder is incomplete or holds a file that does not fit the model."""


@dataclass(frozen=True)
class EchoMimicWeights:
    """Where each part of an official weights folder lives; `locate` checks that every file is there."""

    reference_unet: Path
    denoising_unet: Path
    motion_module: Path
    face_locator: Path
    base_unet_dir: Path
    vae_dir: Path
    whisper: Path

    @classmethod
    def locate(cls, weights_dir: str | os.PathLike[str]) -> EchoMimicWeights:
        root = Path(weights_dir)
        if not root.is_dir():
            raise WeightsError(f"{root}: weights folder not found")
        weights = cls(
            reference_unet=_required(root / "reference_unet.pth"),
            denoising_unet=_preferred(root / "denoising_unet_acc.pth", root / "denoising_unet.pth"),
            motion_module=_preferred(root / "motion_module_acc.pth", root / "motion_module.pth"),
            face_locator=_required(root / "face_locator.pth"),
            base_unet_dir=root / "sd-image-variations-diffusers" / "unet",
            vae_dir=root / "sd-vae-ft-mse",
            whisper=_required(root / "audio_processor" / "whisper_tiny.pt"),
        )
        _required(weights.base_unet_dir / "config.json")
        _required(weights.vae_dir / "config.json")
        _diffusers_weights_file(weights.vae_dir)
        return weights


def load_echomimic(
    weights_dir: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: ProgressCallback | None = None,
) -> EchoMimicPipeline:
    """Build every EchoMimic component from an official weights folder and return the pipeline, in eval mode.

    `device` defaults to CUDA when available, else CPU; `dtype` defaults to float16 on CUDA (as the official
    inference runs) and float32 elsewhere. `progress` gets one "loading" event per component.
    """
    target = torch.device(device) if device is not None else _default_device()
    dtype = dtype if dtype is not None else (torch.float16 if target.type == "cuda" else torch.float32)
    if dtype not in CAST_METHODS:
        raise ValueError(f"unsupported dtype {dtype}; use float16, bfloat16 or float32")
    weights = EchoMimicWeights.locate(weights_dir)
    stages = 6
    base_config_file = weights.base_unet_dir / "config.json"
    base_config = _read_json(base_config_file)

    # Each component is cast right after it loads, so at most one of them is ever held in float32.
    reference_unet = _build_on(target, base_config_file, lambda: ReferenceUNet2DConditionModel.from_config(base_config))
    _load_strict(reference_unet, weights.reference_unet)
    _ready_for_inference(reference_unet, target, dtype)
    report(progress, "loading", 1, stages, weights.reference_unet.name)

    denoising_unet = _build_on(
        target,
        base_config_file,
        lambda: EchoUNet3DConditionModel.from_base_config(base_config, INFERENCE_V2_UNET_ADDITIONAL_KWARGS),
    )
    _load_denoising_unet(denoising_unet, weights)
    _ready_for_inference(denoising_unet, target, dtype)
    report(progress, "loading", 2, stages, weights.denoising_unet.name)

    face_locator = _build_on(
        target,
        base_config_file,
        lambda: FaceLocator(
            conditioning_embedding_channels=base_config["block_out_channels"][0],
            conditioning_channels=FACE_LOCATOR_CONDITIONING_CHANNELS,
            block_out_channels=FACE_LOCATOR_BLOCK_OUT_CHANNELS,
        ),
    )
    _load_strict(face_locator, weights.face_locator)
    _ready_for_inference(face_locator, target, dtype)
    report(progress, "loading", 3, stages, weights.face_locator.name)

    vae = load_diffusers_model(weights.vae_dir, AutoencoderKL.from_config, target, dtype, _renamed_vae_attention)
    report(progress, "loading", 4, stages, weights.vae_dir.name)

    try:
        whisper_encoder = load_whisper_tiny_encoder(weights.whisper)
    except WhisperCheckpointError as error:
        raise WeightsError(str(error)) from error
    # Half precision on CUDA like the official run, which feeds whisper float16 log-mels; its LayerNorms compute in
    # float32 either way.
    _ready_for_inference(whisper_encoder, target, dtype)
    report(progress, "loading", 5, stages, weights.whisper.name)

    pipeline = EchoMimicPipeline(
        vae=vae,
        reference_unet=reference_unet,
        denoising_unet=denoising_unet,
        face_locator=face_locator,
        audio_features=AudioFeatureExtractor(whisper_encoder),
        scheduler=make_ddim_scheduler(),
    )
    report(progress, "loading", 6, stages, "pipeline")
    return pipeline


def load_diffusers_model(
    folder: Path,
    build: Callable[[dict[str, Any]], ModuleT],
    device: torch.device,
    dtype: torch.dtype,
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> ModuleT:
    """A diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors` or `.bin`): built by `build`
    from its config, loaded strictly (after `rename`), on `device` in `dtype`, in eval mode.

    A missing or unreadable file, a config the model cannot be built from, or a key that is missing or of the wrong
    shape raises `WeightsError` naming the file.
    """
    config_file = _required(folder / "config.json")
    config = _read_json(config_file)
    model = _build_on(device, config_file, lambda: build(config))
    _load_strict(model, _diffusers_weights_file(folder), rename)
    _ready_for_inference(model, device, dtype)
    return model


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _build_on(device: torch.device, config_file: Path, build: Callable[[], ModuleT]) -> ModuleT:
    """Construct a module with its parameters created on `device` (random init of a full-size UNet is slow on CPU).

    A config the model cannot be built from (a missing field, an unsupported block type) names `config_file`.
    """
    try:
        with device:
            return build()
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise WeightsError(f"{config_file}: cannot build the model from this config ({error!r})") from error


def _ready_for_inference(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """On `device`, floating parameters and buffers cast to `dtype`, eval mode, no gradients.

    The cast goes through `half()`/`float()` because diffusers' `to(dtype)` logs a spurious float32-modules warning
    for every model.
    """
    getattr(module.to(device), CAST_METHODS[dtype])()
    module.eval().requires_grad_(False)


def _required(path: Path) -> Path:
    if not path.is_file():
        raise WeightsError(f"{path}: required file not found")
    return path


def _preferred(first: Path, fallback: Path) -> Path:
    if first.is_file():
        return first
    if fallback.is_file():
        return fallback
    raise WeightsError(f"{first.parent}: neither {first.name} nor {fallback.name} found")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: not a readable JSON config ({error})") from error
    if not isinstance(content, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return content


def _find_diffusers_weights(folder: Path) -> Path | None:
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def _diffusers_weights_file(folder: Path) -> Path:
    found = _find_diffusers_weights(folder)
    if found is None:
        raise WeightsError(f"{folder}: no diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin")
    return found


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a `.pth`/`.bin` (weights only) or `.safetensors` file, on the CPU."""
    try:
        if path.suffix == ".safetensors":
            state: object = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, SafetensorError, ValueError, pickle.UnpicklingError) as error:
        raise WeightsError(f"{path}: not a readable checkpoint ({error})") from error
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path}: expected a flat state dict of tensors")
    return dict(state)


def _load_strict(
    model: torch.nn.Module,
    path: Path,
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    state = _read_state(path)
    if rename is not None:
        state = rename(state)
    try:
        load_strict(model, state, str(path))
    except CheckpointMismatchError as error:
        raise WeightsError(str(error)) from error


def _renamed_vae_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state.items():
        module, _, parameter = key.rpartition(".")
        path, _, leaf = module.rpartition(".")
        if ".attentions." in key and leaf in DEPRECATED_VAE_ATTENTION_NAMES:
            key = f"{path}.{DEPRECATED_VAE_ATTENTION_NAMES[leaf]}.{parameter}"
        renamed[key] = value
    return renamed


def _load_denoising_unet(model: EchoUNet3DConditionModel, weights: EchoMimicWeights) -> None:
    """The official merge: base SD UNet, then motion modules, then the denoising file (see `checkpoint_loading`).

    The EchoMimic files normally hold every key; the base SD UNet weights are read only when they do not, and a key
    found nowhere is an error rather than a silently random weight.
    """
    denoising_state = _read_state(weights.denoising_unet)
    motion_state = _read_state(weights.motion_module)
    needs_base = any(key not in denoising_state and key not in motion_state for key in model.state_dict())
    base_state = _read_base_unet_state(weights.base_unet_dir) if needs_base else {}
    try:
        loaded = load_denoising_unet_state(
            model, base_state, motion_state, denoising_state, str(weights.denoising_unet)
        )
    except CheckpointMismatchError as error:
        raise WeightsError(str(error)) from error
    if loaded.not_loaded:
        first = loaded.not_loaded[0]
        raise WeightsError(
            f"{weights.denoising_unet}: missing key {first!r} (expected shape {list(model.state_dict()[first].shape)}; "
            f"{len(loaded.not_loaded)} keys missing in all), and neither {weights.motion_module.name} nor the base "
            f"UNet weights in {weights.base_unet_dir} provide it with that shape"
        )


def _read_base_unet_state(folder: Path) -> dict[str, torch.Tensor]:
    found = _find_diffusers_weights(folder)
    return {} if found is None else _read_state(found)
