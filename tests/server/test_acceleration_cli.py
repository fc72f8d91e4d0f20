"""`echolive flops`, `echolive compile`, the `--profile` family of options and the doctor's backend line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from echomimic.acceleration.profiles import QUALITY, REALTIME
from server.acceleration_options import AccelerationOptions, add_acceleration_options
from server.cli import main
from tests.server.test_optional_echomimic import run_without_torch


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`echolive ARGS` in this process (the model stack is imported once for all tests)."""

    def run(*args: str) -> Result:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def test_flops_json_has_the_issue_fields(run_cli: Callable[..., Result]) -> None:
    result = run_cli("flops", "--json", "--size", "64", "--steps", "4", "--decoder", "tiny", "--peak", "100")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for field in ("unet_tflop_per_frame_step", "decoder_tflop_per_frame", "tflop_per_output_frame"):
        assert report[field] > 0
    assert report["profile"]["num_inference_steps"] == 4
    assert report["profile"]["size"] == 64
    assert report["fps_bound"] == {"custom": pytest.approx(100 / report["tflop_per_output_frame"])}
    assert report["fps_bound_at_half_peak"]["custom"] == pytest.approx(report["fps_bound"]["custom"] / 2)


def test_flops_table_names_the_gpus(run_cli: Callable[..., Result]) -> None:
    result = run_cli("flops", "--profile", "realtime", "--size", "64", "--gpu", "4090", "--gpu", "H200")
    assert result.returncode == 0, result.stderr
    assert "4090" in result.stdout and "H200" in result.stdout and "A100" not in result.stdout
    assert "fps at 50%" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["flops", "--size", "500"], "multiple of 8"),
        (["flops", "--profile", "turbo"], "unknown profile 'turbo'; choose one of quality, realtime"),
        (["flops", "--peak", "-3"], "--peak must be positive"),
        (["compile", "--weights", "."], "cannot build TensorRT engines here: no CUDA device"),
    ],
)
def test_bad_input_gives_one_clear_line(run_cli: Callable[..., Result], args: list[str], expected: str) -> None:
    result = run_cli(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert result.stdout == ""


def test_acceleration_options_parse_without_a_model() -> None:
    parser = argparse.ArgumentParser()
    add_acceleration_options(parser)
    assert AccelerationOptions.from_args(parser.parse_args([])) == AccelerationOptions()
    options = AccelerationOptions.from_args(
        parser.parse_args(
            ["--profile", "realtime", "--taesd", "taesd", "--backend", "eager", "--engine-dir", "e", "--channels-last"]
        )
    )
    assert options == AccelerationOptions(REALTIME, Path("taesd"), "eager", Path("e"), channels_last=True)
    assert AccelerationOptions().profile is QUALITY


def test_doctor_names_the_unet_backend_and_why(run_cli: Callable[..., Result]) -> None:
    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "UNet backend" in line)
    detail = line.split("UNet backend", 1)[1].strip()
    assert detail.split()[0] in {"tensorrt", "compile", "eager"}
    assert detail.endswith("for the quality profile")
    if not torch.cuda.is_available():
        assert detail.startswith("eager") and "not tensorrt: no CUDA device" in detail


def test_doctor_says_whether_channels_last_is_on(run_cli: Callable[..., Result]) -> None:
    def detail(*args: str) -> str:
        result = run_cli("doctor", *args)
        assert result.returncode == 0, result.stderr
        return next(line for line in result.stdout.splitlines() if "channels-last" in line).split("channels-last", 1)[1]

    assert detail().strip().startswith("off")
    on = detail("--channels-last").strip()
    assert on.startswith("on: the denoising UNet and the frame decoder")
    assert ("no CUDA device" in on) is not torch.cuda.is_available()


@pytest.mark.parametrize("command", [["flops"], ["compile", "--weights", "."]])
def test_without_torch_the_commands_say_what_to_install(command: list[str]) -> None:
    code = f"from server.cli import main\nsys.exit(main({command!r}))\n"
    result = run_without_torch(code, Path(__file__).parents[2])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'echomimic-live[echomimic]'" in lines[0]
