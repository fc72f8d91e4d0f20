"""The same conformance run on a CUDA device: float32 with TF32 off must meet the CPU thresholds; float16, the
dtype real weights load in on a GPU, must stay close and produce finite frames; the live renderer reports
the device memory a window takes, for admission; and the live sampler denoises a window without making the host
wait for the GPU, nor does preparing one. Skipped where there is no GPU."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from echomimic.acceleration.profiles import QUALITY
from echomimic.live_sampler import denoise_windows
from echomimic.rolling_audio_features import RollingAudioFeatures
from echomimic.streaming_renderer import EchoMimicRenderer
from echomimic.weights import load_echomimic
from server.metrics import ServerMetrics
from server.render_times import RenderTimes
from server.timed_renderer import TimedRenderer
from server.warm_up import warm_up
from streaming.lite.default_portrait import default_portrait_path
from tests.echomimic.conftest import run_official_sampler_call
from tests.echomimic.device_window import window_on_the_device
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"),
]

FINAL_LATENTS_ATOL = 3e-4
FLOAT16_FINAL_LATENTS_ATOL = 5e-2
"""fp16 keeps about three significant digits through six denoising steps; a real bug costs O(1) (see the README
of the conformance data), so this still separates right from wrong."""


@pytest.fixture
def tf32_off() -> Iterator[None]:
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float32, FINAL_LATENTS_ATOL), (torch.float16, FLOAT16_FINAL_LATENTS_ATOL)]
)
def test_pipeline_on_cuda_matches_the_official_run(
    conformance_dir: Path, tmp_path: Path, tf32_off: None, dtype: torch.dtype, atol: float
) -> None:
    pipeline = load_echomimic(write_fake_weights_folder(conformance_dir, tmp_path), device="cuda", dtype=dtype)
    output = run_official_sampler_call(pipeline, conformance_dir)
    latents = output.latents.float().cpu()
    assert torch.isfinite(latents).all()
    expected = load_file(conformance_dir / "tiny/e_pipeline.safetensors")["final_latents"]
    torch.testing.assert_close(latents, expected, atol=atol, rtol=0)


def test_the_live_renderer_reports_the_device_memory_a_window_takes(conformance_dir: Path, tmp_path: Path) -> None:
    renderer = EchoMimicRenderer.from_weights(
        write_fake_weights_folder(conformance_dir, tmp_path),
        device="cuda",
        profile=replace(QUALITY, size=64, num_inference_steps=2),
    )
    avatar = renderer.prepare_avatar(np.asarray(Image.open(default_portrait_path()).convert("RGB")))
    before = renderer.device_memory()
    assert before is not None and before.session_bytes == 0 and before.free_bytes > 0
    warm_up(TimedRenderer(renderer, ServerMetrics().render_seconds, RenderTimes()), avatar)
    after = renderer.device_memory()
    assert after is not None and after.session_bytes > 0


@pytest.mark.parametrize("deep_feature_interval", [1, 2])
def test_a_live_window_denoises_without_a_host_sync(
    conformance_dir: Path, tmp_path: Path, deep_feature_interval: int
) -> None:
    """Inputs where the live renderer has them (`tests/echomimic/device_window.py`, also run on the CPU): any
    blocking copy, `.item()` or `.tolist()` of a device tensor the sampler or the UNet makes inside the window
    raises here."""
    pipeline = load_echomimic(write_fake_weights_folder(conformance_dir, tmp_path), device="cuda", dtype=torch.float16)
    window = window_on_the_device(pipeline)
    steps = 4
    denoise_windows(pipeline, pipeline.denoising_unet, [window], steps, 1.0, deep_feature_interval)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        (latents,) = denoise_windows(pipeline, pipeline.denoising_unet, [window], steps, 1.0, deep_feature_interval)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert latents is not None and torch.isfinite(latents).all()


def test_a_window_is_prepared_without_a_host_sync(conformance_dir: Path, tmp_path: Path) -> None:
    """What the batch leader prepares under the model lock before sampling: whisper features from the rolling audio
    history and shown frames encoded to latents. Host data crosses through pinned memory, so the host can queue this
    window's kernels while the GPU still runs the last batch's."""
    pipeline = load_echomimic(write_fake_weights_folder(conformance_dir, tmp_path), device="cuda", dtype=torch.float16)
    assert pipeline.audio_features is not None
    history = RollingAudioFeatures(pipeline.audio_features.encoder, fps=24.0, segment_seconds=2.0)
    history.write(0, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    history.chunks(0, 6)  # warm-up: library handles, kernel choice
    pipeline.encode_frames(frames)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        features, latents = history.chunks(6, 6), pipeline.encode_frames(frames)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert features.shape[0] == 6 and latents.shape == (2, 4, 8, 8)
