"""`render_clip`: a whole clip from a weights folder, a portrait and a waveform (tiny weights, small frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echomimic.offline import render_clip
from echomimic.progress import ProgressEvent
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

PORTRAIT = Path(__file__).parents[2] / "streaming/assets/default_portrait.png"


@pytest.fixture(scope="module")
def weights_dir(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.asarray(Image.open(PORTRAIT).convert("RGB"))


def _speech(seconds: float) -> np.ndarray:
    time = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 220 * time) * np.sin(2 * np.pi * 3 * time)).astype(np.float32)


def test_renders_one_frame_per_frame_interval_of_audio(weights_dir: Path, portrait: np.ndarray) -> None:
    events: list[ProgressEvent] = []
    frames = render_clip(
        weights_dir,
        portrait,
        _speech(0.3),
        fps=24,
        progress=events.append,
        size=64,
        num_inference_steps=2,
        device="cpu",
    )
    assert frames.shape == (8, 64, 64, 3)  # ceil(0.3 s · 24)
    assert frames.dtype == np.uint8
    assert frames.std() > 0
    stages = [event.stage for event in events]
    assert stages.index("preparing") < stages.index("loading") < stages.index("denoising") < stages.index("decoding")
    assert [event.done for event in events if event.stage == "denoising"] == [1, 2]
    assert [event.done for event in events if event.stage == "decoding"] == list(range(1, 9))


def test_the_same_seed_renders_the_same_clip(weights_dir: Path, portrait: np.ndarray) -> None:
    first = render_clip(weights_dir, portrait, _speech(0.1), size=64, num_inference_steps=1, device="cpu", seed=3)
    again = render_clip(weights_dir, portrait, _speech(0.1), size=64, num_inference_steps=1, device="cpu", seed=3)
    np.testing.assert_array_equal(first, again)


def test_bad_input_is_refused_before_loading_weights(tmp_path: Path, portrait: np.ndarray) -> None:
    with pytest.raises(ValueError, match="non-empty 16 kHz mono"):
        render_clip(tmp_path, portrait, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="face"):
        render_clip(tmp_path, np.full((256, 256, 3), 128, np.uint8), _speech(0.1))
