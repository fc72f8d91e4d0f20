"""Conformance (e): the accelerated EchoMimic sampler against the official run on the tiny weights.

The whole pipeline runs once per module (about 12 s on one CPU thread): from the portrait, face mask, WAV and the
official initial noise to the final latents and video, with every scheduler step recorded on the way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from echomimic.pipelines.pipeline_echomimic import (
    DenoisingStep,
    EchoMimicPipeline,
    EchoMimicPipelineOutput,
    frames_to_uint8,
    velocity_through_clean_estimate,
)
from echomimic.progress import ProgressEvent
from echomimic.schedulers import make_ddim_scheduler
from echomimic.weights import load_echomimic
from tests.echomimic.conftest import run_official_sampler_call
from tests.echomimic.fake_weights_folder import write_fake_weights_folder

FINAL_LATENTS_ATOL = 3e-4
VIDEO_ATOL = 2e-4
STEP_ATOL = 3e-4
"""The README's suggested thresholds; thread-count noise alone is 2.8e-5 (latents) and 1.5e-5 (video)."""


@pytest.fixture(scope="module")
def fixture_e(conformance_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(conformance_dir / "tiny/e_pipeline.safetensors")


@pytest.fixture(scope="module")
def pipeline(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EchoMimicPipeline:
    weights_dir = write_fake_weights_folder(conformance_dir, tmp_path_factory.mktemp("weights"))
    return load_echomimic(weights_dir, device="cpu", dtype=torch.float32)


@dataclass(frozen=True)
class OfficialRun:
    output: EchoMimicPipelineOutput
    steps: list[DenoisingStep]
    events: list[ProgressEvent]


@pytest.fixture(scope="module")
def official_run(pipeline: EchoMimicPipeline, conformance_dir: Path) -> OfficialRun:
    """The e_pipeline.json call: 192x128, 20 frames, 6 steps, guidance 1, windows 12/3, fps 24."""
    steps: list[DenoisingStep] = []
    events: list[ProgressEvent] = []
    output = run_official_sampler_call(
        pipeline, conformance_dir, callback_on_step_end=steps.append, progress=events.append
    )
    return OfficialRun(output, steps, events)


def test_scheduler_is_configured_as_the_official_inference(conformance_dir: Path) -> None:
    recorded = json.loads((conformance_dir / "tiny/configs/scheduler_config.json").read_text())
    config = make_ddim_scheduler().config
    assert {key: config[key] for key in recorded} == recorded


def test_timesteps_and_zero_snr_alphas(fixture_e: dict[str, torch.Tensor]) -> None:
    scheduler = make_ddim_scheduler()
    scheduler.set_timesteps(6)
    assert scheduler.timesteps.tolist() == fixture_e["timesteps"].tolist() == [999, 832, 666, 499, 332, 166]
    torch.testing.assert_close(scheduler.alphas_cumprod, fixture_e["alphas_cumprod"], atol=1e-6, rtol=0)
    assert scheduler.alphas_cumprod[999] == 0


def test_each_ddim_step_matches_the_official_step(fixture_e: dict[str, torch.Tensor]) -> None:
    scheduler = make_ddim_scheduler()
    scheduler.set_timesteps(6)
    latents = fixture_e["initial_latents"]
    for index, timestep in enumerate(scheduler.timesteps):
        stepped = scheduler.step(fixture_e["step_model_output"][index], timestep, latents, eta=0.0).prev_sample
        torch.testing.assert_close(stepped, fixture_e["step_output_latents"][index], atol=2e-6, rtol=0)
        latents = fixture_e["step_output_latents"][index]


def test_the_clean_estimate_round_trip_gives_back_the_velocity() -> None:
    generator = torch.manual_seed(1)
    velocity, sample = torch.randn(2, 1, 4, 3, 2, 2, generator=generator)
    for alpha_bar in (0.0, 0.3, 0.97):
        round_trip = velocity_through_clean_estimate(velocity, sample, torch.tensor(alpha_bar))
        torch.testing.assert_close(round_trip, velocity, atol=1e-5, rtol=0)


def test_portrait_preprocessing_and_latents(pipeline: EchoMimicPipeline, fixture_e: dict[str, torch.Tensor]) -> None:
    image = fixture_e["ref_image_uint8_hwc"].numpy()
    torch.testing.assert_close(pipeline.image_to_vae_input(image), fixture_e["ref_image_tensor"], atol=0, rtol=0)
    reference = pipeline.prepare_reference(image, fixture_e["face_mask"][0, 0, 0].numpy())
    torch.testing.assert_close(reference.latents, fixture_e["ref_image_latents"], atol=2e-5, rtol=0)
    torch.testing.assert_close(reference.face_features, fixture_e["face_locator_output"], atol=1e-5, rtol=0)


def test_decoding_the_official_final_latents(pipeline: EchoMimicPipeline, fixture_e: dict[str, torch.Tensor]) -> None:
    video = pipeline.decode_latents(fixture_e["final_latents"])
    torch.testing.assert_close(video, fixture_e["video"], atol=VIDEO_ATOL, rtol=0)


def test_every_step_matches_the_official_sampler(official_run: OfficialRun, fixture_e: dict[str, torch.Tensor]) -> None:
    assert [step.timestep for step in official_run.steps] == fixture_e["timesteps"].tolist()
    for step in official_run.steps:
        expected_output = fixture_e["step_model_output"][step.step_index]
        expected_latents = fixture_e["step_output_latents"][step.step_index]
        torch.testing.assert_close(step.model_output, expected_output, atol=STEP_ATOL, rtol=0)
        torch.testing.assert_close(step.latents, expected_latents, atol=STEP_ATOL, rtol=0)


def test_final_latents_and_video_match_the_official_run(
    official_run: OfficialRun, fixture_e: dict[str, torch.Tensor]
) -> None:
    output = official_run.output
    torch.testing.assert_close(output.latents, fixture_e["final_latents"], atol=FINAL_LATENTS_ATOL, rtol=0)
    assert output.video is not None
    torch.testing.assert_close(output.video, fixture_e["video"], atol=VIDEO_ATOL, rtol=0)


def test_guidance_mixes_an_unconditional_half_without_audio_face_or_banks(
    pipeline: EchoMimicPipeline, fixture_e: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []
    unet_forward = pipeline.denoising_unet.forward

    def recording_forward(sample: torch.Tensor, timestep: torch.Tensor, **kwargs: object) -> torch.Tensor:
        output = unet_forward(sample, timestep, **kwargs)
        calls.append({"sample": sample, "output": output, **kwargs})
        return output

    monkeypatch.setattr(pipeline.denoising_unet, "forward", recording_forward)
    steps: list[DenoisingStep] = []
    pipeline(
        fixture_e["ref_image_uint8_hwc"].numpy(),
        fixture_e["face_mask"][0, 0, 0].numpy(),
        audio_features=fixture_e["audio_features"][0, :4],
        num_inference_steps=1,
        guidance_scale=2.5,
        noise=fixture_e["initial_noise"][:, :, :4],
        output_type="latent",
        callback_on_step_end=steps.append,
    )

    (call,) = calls  # 4 frames fit one window; one step
    assert call["uncond_first_half"] is True
    audio, face = call["audio_features"], call["face_features"]
    assert isinstance(audio, torch.Tensor) and isinstance(face, torch.Tensor)
    assert audio.shape[0] == face.shape[0] == 2
    assert not audio[0].any() and not face[0].any()
    torch.testing.assert_close(audio[1], fixture_e["audio_features"][0, :4])
    output = call["output"]
    assert isinstance(output, torch.Tensor)
    unconditional, conditional = output.chunk(2)
    expected = unconditional + 2.5 * (conditional - unconditional)
    torch.testing.assert_close(steps[0].model_output, expected, atol=1e-5, rtol=0)


def test_progress_counts_every_unet_call_then_every_decoded_frame(official_run: OfficialRun) -> None:
    denoising = [(event.done, event.total) for event in official_run.events if event.stage == "denoising"]
    assert denoising == [(done, 6 * 3) for done in range(1, 19)]  # 6 steps of 3 windows
    decoding = [(event.done, event.total) for event in official_run.events if event.stage == "decoding"]
    assert decoding == [(done, 20) for done in range(1, 21)]
    assert [event.stage for event in official_run.events] == ["denoising"] * 18 + ["decoding"] * 20


def test_frames_come_out_as_uint8_rgb(official_run: OfficialRun) -> None:
    output = official_run.output
    assert output.video is not None
    frames = frames_to_uint8(output.video[0].unbind(1))
    assert frames.shape == (20, 128, 192, 3) and frames.dtype == np.uint8
    expected = np.round(output.video[0, :, 7].permute(1, 2, 0).numpy() * 255)
    np.testing.assert_array_equal(frames[7], expected.astype(np.uint8))


def test_inputs_are_checked(pipeline: EchoMimicPipeline, fixture_e: dict[str, torch.Tensor]) -> None:
    image = fixture_e["ref_image_uint8_hwc"].numpy()
    with pytest.raises(ValueError, match="face mask must be"):
        pipeline.prepare_reference(image, np.ones((64, 64), dtype=np.float32))
    with pytest.raises(ValueError, match="multiple of 8"):
        pipeline.prepare_reference(image[:100], np.ones((100, 192), dtype=np.float32))
    with pytest.raises(ValueError, match="not both"):
        pipeline(image, np.ones((128, 192), np.float32), np.zeros(1600, np.float32), audio_features=torch.zeros(1))
    with pytest.raises(ValueError, match="noise must have shape"):
        pipeline(
            image,
            np.ones((128, 192), np.float32),
            audio_features=fixture_e["audio_features"][0, :4],
            noise=torch.zeros(1, 4, 3, 16, 24),
        )
