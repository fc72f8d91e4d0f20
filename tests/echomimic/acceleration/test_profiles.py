"""Generation profiles: lookup by name, validation, and no torch needed to parse them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from echomimic.acceleration.profiles import PROFILES, QUALITY, REALTIME, GenerationProfile, profile_by_name


def test_quality_is_the_official_accelerated_setting() -> None:
    assert (QUALITY.size, QUALITY.num_inference_steps, QUALITY.decoder) == (512, 6, "vae")
    assert (QUALITY.window_frames, QUALITY.context_frames) == (12, 3)


def test_realtime_removes_work_from_quality() -> None:
    assert REALTIME.size < QUALITY.size
    assert REALTIME.num_inference_steps < QUALITY.num_inference_steps
    assert REALTIME.decoder == "tiny"
    assert REALTIME.full_steps < REALTIME.num_inference_steps


def test_profiles_by_name() -> None:
    assert profile_by_name("realtime") is REALTIME
    assert set(PROFILES) == {"quality", "realtime"}
    with pytest.raises(ValueError, match="choose one of quality, realtime"):
        profile_by_name("turbo")


def test_bad_profiles_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        GenerationProfile("odd", "", 500, 6, 12, 3, "vae")
    with pytest.raises(ValueError, match="motion module"):
        GenerationProfile("long", "", 512, 6, 30, 3, "vae")
    with pytest.raises(ValueError, match="decoder"):
        GenerationProfile("jpeg", "", 512, 6, 12, 3, "jpeg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deep_feature_interval must be at least 1"):
        GenerationProfile("never", "", 512, 6, 12, 3, "vae", deep_feature_interval=0)


@pytest.mark.parametrize(("steps", "interval", "full_steps"), [(6, 1, 6), (4, 2, 2), (3, 2, 2), (5, 3, 2), (1, 4, 1)])
def test_full_steps(steps: int, interval: int, full_steps: int) -> None:
    profile = GenerationProfile("p", "", 512, steps, 12, 3, "vae", deep_feature_interval=interval)
    assert profile.full_steps == full_steps


def test_profiles_import_without_torch() -> None:
    code = "import sys, echomimic.acceleration.profiles; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
