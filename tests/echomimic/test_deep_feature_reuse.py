"""Deep-feature reuse: a step that reuses the deep features runs only the UNet's outermost level, and the live
sampler calls the full pass every N steps and the reusing pass in between."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from echomimic.live_sampler import PinnedFrames, WindowInputs, denoise_windows
from echomimic.models import EchoUNet3DConditionModel, ReferenceUNet2DConditionModel
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline
from echomimic.weights import load_echomimic
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

FRAMES, HEIGHT, WIDTH = 5, 8, 12
ATOL = RTOL = 1e-5


def _call(unet: EchoUNet3DConditionModel, reference_unet: ReferenceUNet2DConditionModel) -> dict[str, object]:
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        banks = reference_unet(torch.randn(1, 4, HEIGHT, WIDTH, generator=generator), 0)
    return {
        "sample": torch.randn(1, 4, FRAMES, HEIGHT, WIDTH, generator=generator),
        "timestep": torch.tensor(500),
        "audio_features": torch.randn(1, FRAMES, 50, 384, generator=generator),
        "face_features": torch.randn(1, unet.config["block_out_channels"][0], 1, HEIGHT, WIDTH, generator=generator),
        "reference_banks": banks,
    }


def test_reusing_a_calls_own_deep_features_gives_its_output(
    tiny_denoising_unet: EchoUNet3DConditionModel, tiny_reference_unet: ReferenceUNet2DConditionModel
) -> None:
    """The outermost level alone, fed the deep features of the same input, recomputes the full output: the skips
    and banks it takes are the right ones."""
    unet = tiny_denoising_unet
    call = _call(unet, tiny_reference_unet)
    with torch.no_grad():
        full = unet(**call)
        kept, deep_features = unet.forward_keeping_deep_features(**call)
        reusing = unet(**call, deep_features=deep_features)
    second_width = unet.config["block_out_channels"][1]
    assert deep_features.shape == (FRAMES, second_width, HEIGHT, WIDTH)
    torch.testing.assert_close(kept, full, atol=0, rtol=0)
    torch.testing.assert_close(reusing, full, atol=ATOL, rtol=RTOL)


def test_a_reusing_call_skips_the_deeper_levels(
    tiny_denoising_unet: EchoUNet3DConditionModel, tiny_reference_unet: ReferenceUNet2DConditionModel
) -> None:
    unet = tiny_denoising_unet
    call = _call(unet, tiny_reference_unet)
    ran: list[str] = []
    deeper = {"mid_block": unet.mid_block, "down_blocks.1": unet.down_blocks[1], "up_blocks.0": unet.up_blocks[0]}
    outer = {"down_blocks.0": unet.down_blocks[0], f"up_blocks.{len(unet.up_blocks) - 1}": unet.up_blocks[-1]}
    hooks = [
        module.register_forward_hook(lambda *_, name=name: ran.append(name))
        for name, module in (deeper | outer).items()
    ]
    try:
        with torch.no_grad():
            _, deep_features = unet.forward_keeping_deep_features(**call)
            ran.clear()
            unet(**call, deep_features=deep_features)
    finally:
        for hook in hooks:
            hook.remove()
    assert sorted(ran) == sorted(outer)


def test_deep_features_of_another_shape_are_refused(
    tiny_denoising_unet: EchoUNet3DConditionModel, tiny_reference_unet: ReferenceUNet2DConditionModel
) -> None:
    unet = tiny_denoising_unet
    call = _call(unet, tiny_reference_unet)
    wrong = torch.zeros(FRAMES, unet.config["block_out_channels"][0], HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="deep_features must be"), torch.no_grad():
        unet(**call, deep_features=wrong)


class _PassRecorder:
    """The pipeline's UNet, recording which pass each sampler step calls."""

    def __init__(self, unet: EchoUNet3DConditionModel) -> None:
        self.unet = unet
        self.passes: list[str] = []

    def __call__(self, *args: object, deep_features: torch.Tensor | None = None) -> torch.Tensor:
        self.passes.append("full" if deep_features is None else "reusing")
        output: torch.Tensor = self.unet(*args, deep_features=deep_features)
        return output

    def forward_keeping_deep_features(self, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
        self.passes.append("keeping")
        return self.unet.forward_keeping_deep_features(*args)


@pytest.fixture(scope="module")
def pipeline(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EchoMimicPipeline:
    weights_dir = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    return load_echomimic(weights_dir, device="cpu", dtype=torch.float32)


def _window(pipeline: EchoMimicPipeline, seed: int, should_stop: object = None) -> WindowInputs:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (8 * HEIGHT, 8 * WIDTH, 3), dtype=np.uint8)
    mask = np.zeros(image.shape[:2], dtype=np.float32)
    mask[16:48, 24:72] = 1.0
    reference = pipeline.prepare_reference(image, mask)
    reference = dataclasses.replace(reference, banks=pipeline.denoising_unet.project_banks(reference.banks))
    window = WindowInputs(
        reference=reference,
        audio_features=torch.from_numpy(rng.standard_normal((FRAMES, 50, 384), dtype=np.float32)),
        noise=torch.from_numpy(rng.standard_normal((1, 4, FRAMES, HEIGHT, WIDTH), dtype=np.float32)),
        pinned=PinnedFrames([0], torch.from_numpy(rng.standard_normal((1, 4, 1, HEIGHT, WIDTH), dtype=np.float32))),
    )
    return window if should_stop is None else dataclasses.replace(window, should_stop=should_stop)


@pytest.mark.parametrize(
    ("steps", "interval", "passes"),
    [
        (4, 1, ["full"] * 4),
        (4, 2, ["keeping", "reusing", "keeping", "reusing"]),
        (3, 2, ["keeping", "reusing", "full"]),  # deep features nobody will reuse are not kept
        (5, 3, ["keeping", "reusing", "reusing", "keeping", "reusing"]),
    ],
)
def test_the_sampler_runs_the_whole_unet_every_interval_steps(
    pipeline: EchoMimicPipeline, steps: int, interval: int, passes: list[str]
) -> None:
    unet = _PassRecorder(pipeline.denoising_unet)
    denoise_windows(pipeline, unet, [_window(pipeline, 1)], steps, 1.0, deep_feature_interval=interval)
    assert unet.passes == passes


def test_reuse_moves_the_window_a_little_not_like_another_sample(pipeline: EchoMimicPipeline) -> None:
    """Reused deep features change the result (the lever is not a no-op), by far less than other noise does."""
    unet = pipeline.denoising_unet
    window = _window(pipeline, 1)
    (every_step,) = denoise_windows(pipeline, unet, [window], 4, 1.0)
    (reusing,) = denoise_windows(pipeline, unet, [window], 4, 1.0, deep_feature_interval=2)
    (other_noise,) = denoise_windows(pipeline, unet, [_window(pipeline, 2)], 4, 1.0)
    assert every_step is not None and reusing is not None and other_noise is not None
    moved = float(torch.linalg.vector_norm(reusing - every_step))
    unrelated = float(torch.linalg.vector_norm(other_noise - every_step))
    assert 0 < moved < unrelated / 4
    torch.testing.assert_close(reusing[:, :, :1], window.pinned.latents)  # type: ignore[union-attr]


def test_an_item_leaving_the_batch_makes_the_next_step_full(pipeline: EchoMimicPipeline) -> None:
    """Kept deep features are per batch item: after an item leaves (here after the second step), the next step
    recomputes them for the rest instead of reusing the step before's."""
    unet = _PassRecorder(pipeline.denoising_unet)
    stop_after_first_step = iter([False, True, True, True]).__next__
    leaving = _window(pipeline, 2, should_stop=stop_after_first_step)
    staying = _window(pipeline, 1)
    staying_result, leaving_result = denoise_windows(
        pipeline, unet, [staying, leaving], 4, 1.0, deep_feature_interval=4
    )
    assert leaving_result is None and staying_result is not None
    assert unet.passes == ["keeping", "reusing", "keeping", "reusing"]
    with pytest.raises(ValueError, match="at least 1"):
        denoise_windows(pipeline, pipeline.denoising_unet, [staying], 4, 1.0, deep_feature_interval=0)
