"""Loading the official weights folder layout, written in a tmp dir from the tiny conformance weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from echomimic.progress import ProgressEvent
from echomimic.weights import (
    DEPRECATED_VAE_ATTENTION_NAMES,
    INFERENCE_V2_UNET_ADDITIONAL_KWARGS,
    EchoMimicWeights,
    WeightsError,
    load_echomimic,
)
from tests.echomimic.fake_weights_folder import link_copy, tiny_state, write_fake_weights_folder


@pytest.fixture(scope="module")
def weights_dir(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))


@pytest.fixture
def editable_dir(weights_dir: Path, tmp_path: Path) -> Path:
    """The fake folder as symlinks: a test replaces or deletes files without touching the shared one."""
    return link_copy(weights_dir, tmp_path / "weights")


def _replace(path: Path, state: dict[str, torch.Tensor]) -> None:
    path.unlink()
    torch.save(state, path)


def test_additional_kwargs_are_the_official_inference_v2_values(conformance_dir: Path) -> None:
    recorded = json.loads((conformance_dir / "tiny/configs/inference_v2_unet_additional_kwargs.json").read_text())
    assert recorded == INFERENCE_V2_UNET_ADDITIONAL_KWARGS


def test_loads_every_component_with_the_files_weights(weights_dir: Path, conformance_dir: Path) -> None:
    events: list[ProgressEvent] = []
    pipeline = load_echomimic(weights_dir, device="cpu", dtype=torch.float32, progress=events.append)

    for module, name in [(pipeline.reference_unet, "reference_unet"), (pipeline.face_locator, "face_locator")]:
        loaded = module.state_dict()
        for key, value in tiny_state(conformance_dir, name).items():
            assert torch.equal(loaded[key], value), key
    denoising = pipeline.denoising_unet.state_dict()
    expected = tiny_state(conformance_dir, "denoising_unet") | tiny_state(conformance_dir, "motion_module")
    assert denoising.keys() == expected.keys()
    assert all(torch.equal(denoising[key], value) for key, value in expected.items())
    assert pipeline.denoising_unet.config.cross_attention_dim == 384
    assert pipeline.face_locator.config.conditioning_embedding_channels == 32
    assert pipeline.scheduler.config.prediction_type == "v_prediction"
    assert not any(parameter.requires_grad for parameter in pipeline.denoising_unet.parameters())
    assert [event.done for event in events] == list(range(1, 7))
    assert {event.stage for event in events} == {"loading"}


def test_casts_to_the_requested_dtype(weights_dir: Path) -> None:
    pipeline = load_echomimic(weights_dir, device="cpu", dtype=torch.bfloat16)
    assert pipeline.denoising_unet.dtype == torch.bfloat16
    assert pipeline.vae.dtype == torch.bfloat16
    assert pipeline.working_dtype == torch.bfloat16


def test_accelerated_files_are_preferred(editable_dir: Path, conformance_dir: Path) -> None:
    assert EchoMimicWeights.locate(editable_dir).denoising_unet.name == "denoising_unet.pth"
    accelerated = tiny_state(conformance_dir, "denoising_unet")
    accelerated["conv_in.bias"] = torch.full_like(accelerated["conv_in.bias"], 0.25)
    torch.save(accelerated, editable_dir / "denoising_unet_acc.pth")
    motion = tiny_state(conformance_dir, "motion_module")
    torch.save(motion, editable_dir / "motion_module_acc.pth")

    located = EchoMimicWeights.locate(editable_dir)
    assert (located.denoising_unet.name, located.motion_module.name) == (
        "denoising_unet_acc.pth",
        "motion_module_acc.pth",
    )
    pipeline = load_echomimic(editable_dir, device="cpu", dtype=torch.float32)
    assert torch.all(pipeline.denoising_unet.state_dict()["conv_in.bias"] == 0.25)


def test_a_missing_file_is_named(editable_dir: Path) -> None:
    (editable_dir / "face_locator.pth").unlink()
    with pytest.raises(WeightsError, match=r"face_locator\.pth: required file not found"):
        load_echomimic(editable_dir, device="cpu")


def test_a_missing_folder_part_is_named(editable_dir: Path) -> None:
    (editable_dir / "sd-vae-ft-mse/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(WeightsError, match="sd-vae-ft-mse: no diffusion_pytorch_model"):
        load_echomimic(editable_dir, device="cpu")
    with pytest.raises(WeightsError, match="weights folder not found"):
        load_echomimic(editable_dir / "nowhere", device="cpu")


def test_a_config_the_models_cannot_be_built_from_is_named(editable_dir: Path, conformance_dir: Path) -> None:
    config_file = editable_dir / "sd-image-variations-diffusers/unet/config.json"
    config = json.loads((conformance_dir / "tiny/configs/unet_base_config.json").read_text())
    config["down_block_types"][0] = "SimpleDownBlock2D"
    config_file.unlink()
    config_file.write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"unet/config\.json: cannot build .*SimpleDownBlock2D"):
        load_echomimic(editable_dir, device="cpu")


def test_a_wrong_shape_names_file_key_and_shapes(editable_dir: Path, conformance_dir: Path) -> None:
    state = tiny_state(conformance_dir, "reference_unet")
    state["conv_in.weight"] = torch.zeros(32, 4, 1, 1)
    _replace(editable_dir / "reference_unet.pth", state)
    with pytest.raises(WeightsError, match=r"reference_unet\.pth.*'conv_in\.weight'.*\[32, 4, 1, 1\].*\[32, 4, 3, 3\]"):
        load_echomimic(editable_dir, device="cpu")


def test_a_wrong_shape_in_the_denoising_file_is_an_error(editable_dir: Path, conformance_dir: Path) -> None:
    state = tiny_state(conformance_dir, "denoising_unet")
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    state[key] = torch.zeros(32, 768)
    _replace(editable_dir / "denoising_unet.pth", state)
    with pytest.raises(WeightsError, match=rf"denoising_unet\.pth.*'{key}'.*\[32, 768\]"):
        load_echomimic(editable_dir, device="cpu")


def test_a_denoising_key_found_nowhere_is_named(editable_dir: Path, conformance_dir: Path) -> None:
    state = tiny_state(conformance_dir, "denoising_unet")
    del state["conv_out.bias"]
    _replace(editable_dir / "denoising_unet.pth", state)
    with pytest.raises(WeightsError, match=r"denoising_unet\.pth: missing key 'conv_out\.bias' \(expected shape \[4\]"):
        load_echomimic(editable_dir, device="cpu")


def test_the_base_unet_weights_fill_keys_the_echomimic_files_lack(editable_dir: Path, conformance_dir: Path) -> None:
    state = tiny_state(conformance_dir, "denoising_unet")
    base_value = torch.full_like(state.pop("conv_out.bias"), 0.5)
    _replace(editable_dir / "denoising_unet.pth", state)
    save_file(
        {"conv_out.bias": base_value},
        editable_dir / "sd-image-variations-diffusers/unet/diffusion_pytorch_model.safetensors",
    )
    pipeline = load_echomimic(editable_dir, device="cpu", dtype=torch.float32)
    assert torch.equal(pipeline.denoising_unet.state_dict()["conv_out.bias"], base_value)


def test_a_file_that_is_no_checkpoint_is_named(editable_dir: Path) -> None:
    (editable_dir / "motion_module.pth").unlink()
    (editable_dir / "motion_module.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"motion_module\.pth: not a readable checkpoint"):
        load_echomimic(editable_dir, device="cpu")


def test_a_broken_whisper_file_is_named(editable_dir: Path, conformance_dir: Path) -> None:
    whisper_state = tiny_state(conformance_dir, "whisper_tiny_encoder")
    del whisper_state["encoder.conv1.bias"]
    dims = json.loads((conformance_dir / "tiny/configs/whisper_dims.json").read_text())
    _replace(editable_dir / "audio_processor/whisper_tiny.pt", {"dims": dims, "model_state_dict": whisper_state})  # type: ignore[dict-item]
    with pytest.raises(WeightsError, match=r"whisper_tiny\.pt.*encoder\.conv1\.bias"):
        load_echomimic(editable_dir, device="cpu")


def test_a_vae_saved_with_pre_refactor_attention_names_loads(editable_dir: Path, conformance_dir: Path) -> None:
    vae_state = tiny_state(conformance_dir, "vae")
    new_to_old = {new: old for old, new in DEPRECATED_VAE_ATTENTION_NAMES.items()}
    old_style = {}
    for key, value in vae_state.items():
        for new, old in new_to_old.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
        old_style[key] = value
    assert "encoder.mid_block.attentions.0.query.weight" in old_style
    vae_file = editable_dir / "sd-vae-ft-mse/diffusion_pytorch_model.safetensors"
    vae_file.unlink()
    save_file(old_style, vae_file)

    pipeline = load_echomimic(editable_dir, device="cpu", dtype=torch.float32)
    loaded = pipeline.vae.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in vae_state.items())


def test_an_unsupported_dtype_is_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unsupported dtype torch\.int8"):
        load_echomimic(tmp_path, device="cpu", dtype=torch.int8)
