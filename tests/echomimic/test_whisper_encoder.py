"""WhisperAudioEncoder: official features (fixture d), checkpoint layout (manifest) and the checkpoint loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from echomimic.models.whisper_encoder import (
    WhisperAudioEncoder,
    WhisperCheckpointError,
    load_whisper_tiny_encoder,
    sinusoid_table,
)

EMBEDDINGS_ATOL = 5e-5


@pytest.fixture(scope="module")
def official_checkpoint(conformance_dir: Path) -> dict[str, Any]:
    """The tiny weights in the layout of the official `whisper_tiny.pt`, with a stand-in decoder key."""
    dims = json.loads((conformance_dir / "tiny/configs/whisper_dims.json").read_text())
    state = dict(load_file(conformance_dir / "tiny/weights/whisper_tiny_encoder.safetensors"))
    state["decoder.token_embedding.weight"] = torch.zeros(8, 4)
    return {"dims": dims, "model_state_dict": state}


@pytest.fixture(scope="module")
def checkpoint_file(official_checkpoint: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "whisper_tiny.pt"
    torch.save(official_checkpoint, path)
    return path


@pytest.fixture(scope="module")
def encoder(checkpoint_file: Path) -> WhisperAudioEncoder:
    return load_whisper_tiny_encoder(checkpoint_file)


@pytest.fixture(scope="module")
def fixture_d(conformance_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(conformance_dir / "tiny/d_whisper.safetensors")


@pytest.fixture(scope="module")
def states(encoder: WhisperAudioEncoder, fixture_d: dict[str, torch.Tensor]) -> torch.Tensor:
    mel = F.pad(fixture_d["mel"], (0, 3000 - fixture_d["mel"].shape[1]))  # [80, 3000]
    with torch.no_grad():
        stacked: torch.Tensor = encoder(mel[None])[0]  # [1500, 5, 384]
    return stacked


def test_stacked_states_match_official_embeddings(states: torch.Tensor, fixture_d: dict[str, torch.Tensor]) -> None:
    assert states.shape == (1500, 5, 384)
    torch.testing.assert_close(states[:100], fixture_d["encoder_embeddings"], atol=EMBEDDINGS_ATOL, rtol=0)


def test_applying_ln_post_fails_the_comparison(
    encoder: WhisperAudioEncoder, states: torch.Tensor, fixture_d: dict[str, torch.Tensor]
) -> None:
    with torch.no_grad():
        normalised = encoder.ln_post(states[:100])
    assert (normalised - fixture_d["encoder_embeddings"]).abs().max() > 100 * EMBEDDINGS_ATOL


def test_loader_reads_weights_as_float32_and_ignores_the_decoder(
    encoder: WhisperAudioEncoder, official_checkpoint: dict[str, Any]
) -> None:
    assert all(parameter.dtype == torch.float32 for parameter in encoder.parameters())
    assert not encoder.training
    in_memory = load_whisper_tiny_encoder(official_checkpoint)
    for key, value in in_memory.state_dict().items():
        torch.testing.assert_close(value, official_checkpoint["model_state_dict"][f"encoder.{key}"].float())


def test_computed_position_table_matches_the_checkpoint_buffer(official_checkpoint: dict[str, Any]) -> None:
    # The stored table differs by one float32 ulp in a single frequency (an exp rounding on the generating machine),
    # which sin/cos turn into at most 3.1e-5 at position 1499. Loading always replaces the table with the stored one.
    stored = official_checkpoint["model_state_dict"]["encoder.positional_embedding"]
    torch.testing.assert_close(sinusoid_table(1500, 384), stored, atol=5e-5, rtol=0)


@pytest.mark.parametrize("shape", [(1, 80, 3002), (1, 80, 201), (1, 40, 200), (80, 200)])
def test_rejects_a_mel_of_the_wrong_shape(encoder: WhisperAudioEncoder, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\[batch, 80, frames\] with an even number of frames up to 3000"):
        encoder(torch.zeros(shape))


def test_a_shorter_mel_is_encoded_from_the_first_positions(encoder: WhisperAudioEncoder) -> None:
    mel = torch.randn(1, 80, 200)
    short = encoder(mel)
    assert short.shape == (1, 100, 5, 384)
    with torch.no_grad():
        embedded = F.gelu(encoder.conv2(F.gelu(encoder.conv1(mel)))).transpose(1, 2)  # [1, 100, 384]
    torch.testing.assert_close(short[:, :, 0], embedded + encoder.positional_embedding[:100])


def test_full_size_layout_matches_the_official_checkpoint(conformance_dir: Path) -> None:
    manifest = json.loads((conformance_dir / "manifests/whisper_tiny.json").read_text())
    dims = manifest["dims"]
    with torch.device("meta"):
        model = WhisperAudioEncoder(
            n_mels=dims["n_mels"],
            n_audio_ctx=dims["n_audio_ctx"],
            n_audio_state=dims["n_audio_state"],
            n_audio_head=dims["n_audio_head"],
            n_audio_layer=dims["n_audio_layer"],
        )
    buffers = {name for name, _ in model.named_buffers()}
    ours = {
        f"encoder.{key}": (list(tensor.shape), "buffer" if key in buffers else "parameter")
        for key, tensor in model.state_dict().items()
    }
    official = {
        key: (entry["shape"], entry["kind"]) for key, entry in manifest["keys"].items() if key.startswith("encoder.")
    }
    assert sorted(ours.keys() - official.keys()) == []
    assert sorted(official.keys() - ours.keys()) == []
    assert ours == official
    assert list(ours) == list(official)


def _edited(checkpoint: dict[str, Any], drop: str = "", add: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    state = {name: value for name, value in checkpoint["model_state_dict"].items() if name != drop}
    return {"dims": checkpoint["dims"], "model_state_dict": state | (add or {})}


def test_loader_names_the_file_and_a_missing_key(official_checkpoint: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "whisper_tiny.pt"
    torch.save(_edited(official_checkpoint, drop="encoder.blocks.2.attn.key.weight"), path)
    with pytest.raises(
        WhisperCheckpointError,
        match=r"whisper_tiny\.pt does not fit .*missing key 'encoder\.blocks\.2\.attn\.key\.weight' "
        r"\(expected shape \[384, 384\]\)",
    ):
        load_whisper_tiny_encoder(path)


def test_loader_names_a_key_with_the_wrong_shape(official_checkpoint: dict[str, Any]) -> None:
    checkpoint = _edited(official_checkpoint, add={"encoder.conv2.weight": torch.zeros(384, 384, 5)})
    with pytest.raises(
        WhisperCheckpointError,
        match=r"'encoder\.conv2\.weight' has shape \[384, 384, 5\] in the file but \[384, 384, 3\] in the model",
    ):
        load_whisper_tiny_encoder(checkpoint)


def test_loader_rejects_an_unknown_encoder_key(official_checkpoint: dict[str, Any]) -> None:
    checkpoint = _edited(official_checkpoint, add={"encoder.blocks.0.attn.key.bias": torch.zeros(384)})
    with pytest.raises(WhisperCheckpointError, match=r"unexpected key 'encoder\.blocks\.0\.attn\.key\.bias'"):
        load_whisper_tiny_encoder(checkpoint)


def test_loader_rejects_checkpoints_of_another_shape(official_checkpoint: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(WhisperCheckpointError, match="'dims' lacks n_audio_layer"):
        dims = {name: value for name, value in official_checkpoint["dims"].items() if name != "n_audio_layer"}
        load_whisper_tiny_encoder({"dims": dims, "model_state_dict": official_checkpoint["model_state_dict"]})
    with pytest.raises(WhisperCheckpointError, match="expected a dict with 'dims' and 'model_state_dict'"):
        load_whisper_tiny_encoder(official_checkpoint["model_state_dict"])

    missing = tmp_path / "absent.pt"
    with pytest.raises(WhisperCheckpointError, match=r"absent\.pt: whisper checkpoint not found"):
        load_whisper_tiny_encoder(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WhisperCheckpointError, match=r"garbage\.pt: not a readable whisper checkpoint"):
        load_whisper_tiny_encoder(garbage)
