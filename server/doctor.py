"""`echolive doctor`: what this machine can run, found by trying each piece rather than guessing."""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Finding:
    topic: str
    ok: bool
    detail: str


def examine(weights_dir: Path | None, channels_last: bool = False) -> list[Finding]:
    """Every check, in the order a user reads them: machine, media stack, renderers, test tools. `channels_last` is
    the `--channels-last` option, reported as it would apply here."""
    checks: list[Callable[[], Finding]] = [
        _machine,
        _torch,
        _tensorrt,
        _pyav_codecs,
        _webrtcvad,
        _face_detector,
        lambda: _echomimic_weights(weights_dir),
        lambda: _acceleration(weights_dir),
        lambda: _channels_last(channels_last),
        lambda: _program("chromium (browser test)", "chromium", "--version"),
        lambda: _program("espeak-ng (test speech)", "espeak-ng", "--version"),
    ]
    return [check() for check in checks]


def report(findings: list[Finding]) -> str:
    width = max(len(finding.topic) for finding in findings)
    return "\n".join(
        f"{'ok ' if finding.ok else '-- '} {finding.topic.ljust(width)}  {finding.detail}" for finding in findings
    )


def _machine() -> Finding:
    return Finding(
        "machine",
        True,
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    )


def _torch() -> Finding:
    try:
        torch = importlib.import_module("torch")
    except ImportError as error:
        return Finding("torch", False, f"not importable ({error}); the echomimic renderer needs it")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count()))
        return Finding("torch", True, f"{torch.__version__}, CUDA {torch.version.cuda}: {names}")
    return Finding("torch", True, f"{torch.__version__}, CPU only (echomimic runs, slowly; lite is the live default)")


def _tensorrt() -> Finding:
    try:
        trt = importlib.import_module("torch_tensorrt")
    except ImportError:
        return Finding("torch-tensorrt", False, "not installed (optional: pip install 'echomimic-live[gpu]')")
    return Finding("torch-tensorrt", True, str(trt.__version__))


def _pyav_codecs() -> Finding:
    av = importlib.import_module("av")
    wanted = ["libx264", "aac", "libvpx", "libopus"]
    missing = [codec for codec in wanted if codec not in av.codecs_available]
    if missing:
        return Finding("PyAV codecs", False, f"PyAV {av.__version__} lacks {', '.join(missing)}")
    return Finding("PyAV codecs", True, f"PyAV {av.__version__}: {', '.join(wanted)}")


def _webrtcvad() -> Finding:
    vad = importlib.import_module("webrtcvad").Vad(2)
    voiced = vad.is_speech(b"\x00\x00" * 160, 16_000)
    return Finding("webrtcvad", not voiced, "voice activity detector works" if not voiced else "misreads silence")


def _face_detector() -> Finding:
    cv2 = importlib.import_module("cv2")
    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not cascade.is_file():
        return Finding("face detector", False, f"OpenCV {cv2.__version__} ships no Haar cascades (need opencv 4.x)")
    return Finding("face detector", True, f"OpenCV {cv2.__version__} Haar cascades")


def _echomimic_weights(weights_dir: Path | None) -> Finding:
    if weights_dir is None:
        return Finding("echomimic weights", False, "none named (pass --weights DIR, the EchoMimic v1 folder)")
    from echomimic.weights import EchoMimicWeights, WeightsError

    try:
        EchoMimicWeights.locate(weights_dir)
    except WeightsError as error:
        return Finding("echomimic weights", False, str(error))
    return Finding("echomimic weights", True, f"every file of the official layout is in {weights_dir}")


def _acceleration(weights_dir: Path | None) -> Finding:
    """The backend the echomimic renderer would run its denoising UNet on, for the default profile, and why."""
    if importlib.util.find_spec("torch") is None:
        return Finding("UNet backend", False, "no torch, so no echomimic renderer")
    import torch

    from echomimic.acceleration.backend_names import Backend
    from echomimic.acceleration.backends import backend_for
    from echomimic.acceleration.engine_cache import EngineCache, default_engine_dir, weights_fingerprint
    from echomimic.acceleration.profiles import QUALITY
    from echomimic.acceleration.window_program import WindowShape
    from echomimic.weights import EchoMimicWeights, WeightsError

    try:
        weights = weights_fingerprint(EchoMimicWeights.locate(weights_dir)) if weights_dir is not None else None
    except WeightsError:
        weights = None
    shapes = [WindowShape.of_profile(QUALITY)]
    choice = backend_for("auto", shapes, weights, EngineCache(default_engine_dir()), torch.float16)
    return Finding("UNet backend", choice.backend != Backend.EAGER, f"{choice}, for the {QUALITY.name} profile")


def _channels_last(asked: bool) -> Finding:
    """Whether the echomimic renderer runs its UNet and decoder convolutions channels-last (`--channels-last`)."""
    if not asked:
        return Finding(
            "channels-last", False, "off (the default; --channels-last on serve, render or bench turns it on)"
        )
    cuda = importlib.util.find_spec("torch") is not None and importlib.import_module("torch").cuda.is_available()
    where = "on the CUDA device" if cuda else "but there is no CUDA device here: on the CPU it only adds copies"
    return Finding(
        "channels-last", cuda, f"on: the denoising UNet and the frame decoder convert their convolutions, {where}"
    )


def _program(topic: str, program: str, version_flag: str) -> Finding:
    path = shutil.which(program)
    if path is None:
        return Finding(topic, False, f"{program} not found")
    completed = subprocess.run([path, version_flag], capture_output=True, text=True, timeout=30, check=False)
    first_line = (completed.stdout or completed.stderr).strip().splitlines()[:1]
    return Finding(topic, completed.returncode == 0, first_line[0] if first_line else path)
