"""`echolive bench`: a renderer run through a live session's stream in real time, and the report it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from echomimic.acceleration.profiles import QUALITY
from echomimic.streaming_renderer import EchoMimicRenderer
from server.live_bench import run_bench
from streaming.frames import SAMPLE_RATE
from streaming.lite.default_portrait import default_portrait_path, load_portrait
from tests.echomimic.fake_weights_folder import write_fake_weights_folder
from tests.streaming.signals import spoken, write_wav

TWO_PHRASES = ("Good morning.", "The avatar speaks now.")
SYNC_WINDOW = (-0.125, 0.045)
"""ITU-R BT.1359: sound may lead the picture by up to 45 ms and lag it by up to 125 ms."""


@pytest.fixture(scope="module")
def two_utterances() -> np.ndarray:
    # Long enough that the second utterance finds the avatar idle whatever playout delay the warm-up measured:
    # with 0.8 s it did at a 200 ms delay and did not at 160 ms.
    pause = np.zeros(round(1.6 * SAMPLE_RATE), dtype=np.float32)
    first, second = (spoken(phrase) for phrase in TWO_PHRASES)
    return np.concatenate([first, pause, second])


def test_the_lite_report_covers_render_time_latency_frames_seams_and_sync(
    two_utterances: np.ndarray, tmp_path: Path
) -> None:
    audio = write_wav(tmp_path / "speech.wav", two_utterances, SAMPLE_RATE)
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "bench", "--audio", str(audio), "--size", "128", "--json"],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["renderer"], report["frame_size"], report["fps"]) == ("lite", [128, 128], 25.0)
    assert report["windows"] > 0 and 0 < report["window_render_p50"] <= report["window_render_p95"]
    assert report["realtime_factor"] > 0
    assert len(report["onset_latencies"]) == 2, "both utterances start from idle"
    assert all(0 < latency < 1.0 for latency in report["onset_latencies"])
    assert report["frames_sent"] > report["speech_seconds"] * 25
    assert report["seam_window_boundaries"] is not None and report["seam_transitions"] is not None
    assert SYNC_WINDOW[0] <= report["lip_sync_offset"] <= SYNC_WINDOW[1]


def test_the_echomimic_report_comes_from_its_windows(conformance_dir: Path, tmp_path: Path) -> None:
    renderer = EchoMimicRenderer.from_weights(
        write_fake_weights_folder(conformance_dir, tmp_path / "weights"),
        device="cpu",
        profile=replace(QUALITY, size=64, num_inference_steps=1),
        audio_segment_seconds=1.0,
    )
    speech = spoken(TWO_PHRASES[0])
    report = run_bench(renderer, load_portrait(default_portrait_path()), speech)
    assert (report.renderer, report.frame_size, report.window_frames) == ("echomimic", (64, 64), 4)
    assert report.windows > 0 and report.window_render_p95 > 0
    assert report.speech_seconds == pytest.approx(len(speech) / SAMPLE_RATE)
    assert "render" in report.latency_budget and report.playout_delay > 0.3
    assert json.loads(report.to_json())["windows"] == report.windows


def test_bench_refuses_a_bad_size_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "bench", "--audio", str(tmp_path / "none.wav"), "--size", "100"],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "echolive bench: error: size must be a multiple of 8 between 64 and 2048, not 100"
