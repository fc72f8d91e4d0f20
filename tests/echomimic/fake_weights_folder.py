"""A fake official EchoMimic weights folder, written from the tiny conformance weights and configs.

It has the Hugging Face layout `echomimic.weights` reads: `.pth` state dicts saved with `torch.save`, the base UNet
config, the VAE as a diffusers folder and whisper as the official `{dims, model_state_dict}` dict. Parameters are
stored as float32 (the fixtures hold them as float16, which converts exactly).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.echomimic.conftest import tiny_tensors

FILES = (
    "reference_unet.pth",
    "denoising_unet.pth",
    "motion_module.pth",
    "face_locator.pth",
    "sd-image-variations-diffusers/unet/config.json",
    "sd-vae-ft-mse/config.json",
    "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
    "audio_processor/whisper_tiny.pt",
)


def tiny_state(conformance_dir: Path, name: str) -> dict[str, torch.Tensor]:
    """A tiny fixture's weights (`tiny/weights/<name>.safetensors`) as float32."""
    return tiny_tensors(conformance_dir, f"weights/{name}.safetensors")


def write_fake_weights_folder(conformance_dir: Path, root: Path) -> Path:
    configs = conformance_dir / "tiny/configs"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("reference_unet", "denoising_unet", "motion_module", "face_locator"):
        torch.save(tiny_state(conformance_dir, name), root / f"{name}.pth")

    (root / "sd-image-variations-diffusers/unet").mkdir(parents=True)
    shutil.copy(configs / "unet_base_config.json", root / "sd-image-variations-diffusers/unet/config.json")

    (root / "sd-vae-ft-mse").mkdir()
    shutil.copy(configs / "vae_config.json", root / "sd-vae-ft-mse/config.json")
    save_file(tiny_state(conformance_dir, "vae"), root / "sd-vae-ft-mse/diffusion_pytorch_model.safetensors")

    (root / "audio_processor").mkdir()
    whisper_state = tiny_state(conformance_dir, "whisper_tiny_encoder")
    # The official file also holds the text decoder, which EchoMimic never runs; one stand-in key shows it is ignored.
    whisper_state["decoder.token_embedding.weight"] = torch.zeros(8, 384)
    dims = json.loads((configs / "whisper_dims.json").read_text())
    torch.save({"dims": dims, "model_state_dict": whisper_state}, root / "audio_processor/whisper_tiny.pt")
    return root


def link_copy(source: Path, target: Path) -> Path:
    """A folder of symlinks to `source`'s files, so a test can replace or delete one file cheaply."""
    for relative in FILES:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).symlink_to(source / relative)
    return target
