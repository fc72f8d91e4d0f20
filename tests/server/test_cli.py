"""`echolive` as a user runs it: offline rendering end to end, and one clear line for every bad input."""

from __future__ import annotations

import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from server.cli import main
from streaming.frames import SAMPLE_RATE
from streaming.lite.default_portrait import default_portrait_path
from tests.streaming.signals import spoken, write_wav

SPEECH_RATE = 22_050
"""espeak-ng's own rate: the render reads a file that is not at the stream's 16 kHz."""
SILENCE_SECONDS = 1.2


@pytest.fixture(scope="module")
def speech_with_silence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence, a spoken sentence (espeak-ng), silence: the mouth must move only in the middle."""
    silence = np.zeros(int(SILENCE_SECONDS * SPEECH_RATE), dtype=np.float32)
    voice = spoken("Hello, my name is Eileen, and I fly to space.", SPEECH_RATE)
    path = tmp_path_factory.mktemp("speech") / "padded.wav"
    return write_wav(path, np.concatenate([silence, voice, silence]), SPEECH_RATE)


def _decode(video: Path) -> tuple[list[npt.NDArray[np.uint8]], float, float]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        audio_seconds = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
    return frames, fps, audio_seconds


def _mouth_box(image: npt.NDArray[np.uint8]) -> tuple[slice, slice]:
    """The lower middle of the face, found by OpenCV's own detector, independent of the renderer's layout."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(80, 80))
    assert len(faces) >= 1, "the rendered video should still show a face"
    x, y, w, h = max(faces, key=lambda face: face[2] * face[3])
    return slice(y + int(0.62 * h), y + int(0.95 * h)), slice(x + int(0.25 * w), x + int(0.75 * w))


def _mouth_motion(frames: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float64]:
    rows, cols = _mouth_box(frames[0])
    mouths = np.stack([frame[rows, cols].astype(np.float64) for frame in frames])
    return np.abs(np.diff(mouths, axis=0)).mean(axis=(1, 2, 3))


def test_render_moves_the_mouth_during_speech_only(speech_with_silence: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    exit_code = main(
        ["render", "--image", str(default_portrait_path()), "--audio", str(speech_with_silence), "-o", str(output)]
    )
    assert exit_code == 0

    frames, fps, audio_seconds = _decode(output)
    with wave.open(str(speech_with_silence)) as source:
        input_seconds = source.getnframes() / source.getframerate()
    assert abs(len(frames) / fps - input_seconds) < 2 / fps
    assert abs(audio_seconds - input_seconds) < 0.1

    motion = _mouth_motion(frames)
    margin = int(0.3 * fps)
    silent = np.concatenate(
        [motion[: int(SILENCE_SECONDS * fps) - margin], motion[-int(SILENCE_SECONDS * fps) + margin :]]
    )
    speaking = motion[int(SILENCE_SECONDS * fps) + margin : -int(SILENCE_SECONDS * fps) - margin]
    assert np.median(speaking) > 4 * max(np.median(silent), 0.05), (np.median(speaking), np.median(silent))
    assert np.percentile(silent, 95) < np.percentile(speaking, 50)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def silent_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "silence.wav", np.zeros(SAMPLE_RATE // 2, dtype=np.float32), SAMPLE_RATE)


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        pytest.param(
            lambda tmp, wav: ["--image", str(tmp / "missing.png"), "--audio", str(wav)],
            "missing.png",
            id="missing-image",
        ),
        pytest.param(
            lambda tmp, wav: ["--image", str(default_portrait_path()), "--audio", str(tmp / "missing.wav")],
            "missing.wav",
            id="missing-audio",
        ),
        pytest.param(
            lambda tmp, wav: ["--image", str(_no_face_image(tmp)), "--audio", str(wav)],
            "no face",
            id="image-without-face",
        ),
        pytest.param(
            lambda tmp, wav: ["--image", str(default_portrait_path()), "--audio", str(_garbage(tmp / "noise.wav"))],
            "noise.wav",
            id="unreadable-audio",
        ),
        pytest.param(
            lambda tmp, wav: ["--image", str(_garbage(tmp / "fake.png")), "--audio", str(wav)],
            "fake.png",
            id="unreadable-image",
        ),
        pytest.param(
            lambda tmp, wav: ["--image", str(default_portrait_path()), "--audio", str(wav), "--renderer", "magic"],
            "unknown renderer 'magic'",
            id="unknown-renderer",
        ),
        pytest.param(
            lambda tmp, wav: ["--image", str(default_portrait_path()), "--audio", str(wav), "--renderer", "echomimic"],
            "--weights",
            id="echomimic-without-weights",
        ),
    ],
)
def test_bad_input_gives_one_clear_line(
    make_args: Callable[[Path, Path], list[str]], expected: str, tmp_path: Path, silent_wav: Path
) -> None:
    result = _run_cli("render", *make_args(tmp_path, silent_wav), "-o", str(tmp_path / "out.mp4"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()


def _no_face_image(folder: Path) -> Path:
    gradient = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    path = folder / "gradient.png"
    cv2.imwrite(str(path), np.dstack([gradient] * 3))
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not media " * 64)
    return path


def test_doctor_reports_every_component() -> None:
    result = _run_cli("doctor")
    assert result.returncode == 0, result.stderr
    for topic in ("machine", "torch", "PyAV codecs", "webrtcvad", "face detector", "echomimic weights", "chromium"):
        assert topic in result.stdout


def test_serve_refuses_an_admission_margin_out_of_range_in_one_line() -> None:
    result = _run_cli("serve", "--port", "0", "--admission-margin", "1.5")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "echolive serve: error: the admission margin must be at least 0 and below 1, not 1.5"
    ]
