"""FaceLocator against the official run (fixture a) and the official checkpoint layout (manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from echomimic.models.face_locator import FaceLocator
from tests.echomimic.conftest import tiny_config, tiny_tensors

ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny_locator(conformance_dir: Path) -> FaceLocator:
    locator: FaceLocator = FaceLocator.from_config(tiny_config(conformance_dir, "face_locator_config"))
    locator.load_state_dict(tiny_tensors(conformance_dir, "weights/face_locator.safetensors"), strict=True)
    return locator.eval()


def test_matches_official_output(tiny_locator: FaceLocator, conformance_dir: Path) -> None:
    fixture = load_file(conformance_dir / "tiny/a_face_locator.safetensors")
    with torch.no_grad():
        output = tiny_locator(fixture["mask"])
    assert output.shape == fixture["output"].shape == (1, 32, 1, 16, 24)
    torch.testing.assert_close(output, fixture["output"], atol=ATOL, rtol=0)


def test_a_mask_without_its_soft_edge_fails_the_comparison(tiny_locator: FaceLocator, conformance_dir: Path) -> None:
    fixture = load_file(conformance_dir / "tiny/a_face_locator.safetensors")
    hard_mask = (fixture["mask"] > 0).float()
    with torch.no_grad():
        output = tiny_locator(hard_mask)
    assert (output - fixture["output"]).abs().max() > 100 * ATOL


def test_frames_and_batch_items_are_encoded_independently(tiny_locator: FaceLocator) -> None:
    masks = torch.rand(2, 1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        together = tiny_locator(masks)  # [2, 32, 3, 4, 6]
        one_by_one = [tiny_locator(masks[b : b + 1, :, f : f + 1]) for b in range(2) for f in range(3)]
    assert together.shape == (2, 32, 3, 4, 6)
    # Batched and single convolutions take different kernels (and thread splits), which round differently: about
    # 1e-6 here. Mixing frames or batch items would move values by their own size, some 1e5 times more.
    tolerance = 1e-5 * float(together.abs().max())
    for index, single in enumerate(one_by_one):
        b, f = divmod(index, 3)
        torch.testing.assert_close(together[b : b + 1, :, f : f + 1], single, atol=tolerance, rtol=0)


def test_rejects_a_mask_without_a_frame_axis(tiny_locator: FaceLocator) -> None:
    with pytest.raises(ValueError, match="batch, channels, frames, height, width"):
        tiny_locator(torch.zeros(1, 1, 128, 192))


def test_full_size_layout_matches_the_official_checkpoint(conformance_dir: Path) -> None:
    manifest = json.loads((conformance_dir / "manifests/face_locator.json").read_text())
    with torch.device("meta"):
        locator = FaceLocator(320, conditioning_channels=1, block_out_channels=(16, 32, 96, 256))
    ours = {key: list(tensor.shape) for key, tensor in locator.state_dict().items()}
    official = {key: entry["shape"] for key, entry in manifest["keys"].items()}
    assert sorted(ours.keys() - official.keys()) == []
    assert sorted(official.keys() - ours.keys()) == []
    assert ours == official
    assert all(entry["kind"] == "parameter" for entry in manifest["keys"].values())
    assert sum(parameter.numel() for parameter in locator.parameters()) == manifest["num_parameter_elements"]
