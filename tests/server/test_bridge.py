"""`echolive bridge` against a live server on loopback: a wav file as the microphone, the lite avatar and its voice
into an MP4, lips and voice in sync when read back from the file (the mouth's onsets against the voice's); and the
ways it refuses to start."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from bench.av_sync import lip_sync_offsets, read_recording
from bench.child_server import child_server
from bench.latency import make_speech
from bench.mouth_probe import MouthProbe
from server.cli import main
from server.speaking_track import MIC_RATE
from tests.streaming.signals import write_wav

FPS = 25.0
PHRASES = 4
SOUND_FIRST_LIMIT = 0.045
VIDEO_FIRST_LIMIT = 0.125
"""ITU-R BT.1359: sound may lead the picture by 45 ms or trail it by 125 ms before viewers notice."""


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server with its defaults (lite, bundled portrait, ICE on 127.0.0.1) in a process of its own, as a user
    runs it: the bridge and the server must not share one interpreter's lock, or each would delay the other."""
    with child_server(tmp_path_factory.mktemp("server")) as server:
        yield server.base_url


@pytest.fixture(scope="module")
def phrases_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four short phrases, each after 1.6 s of silence (the latency benchmark's speech): four clear onsets."""
    folder = tmp_path_factory.mktemp("phrases")
    speech, _ = make_speech(PHRASES, folder)
    return write_wav(folder / "phrases.wav", speech, MIC_RATE)


def test_the_bridge_writes_the_avatar_with_its_voice_in_sync_to_a_file(
    server_process: str,
    phrases_wav: Path,
    mouth_probe: MouthProbe,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "call.mp4"
    exit_code = main(["bridge", "--server", server_process, "--mic", str(phrases_wav), "--sink", str(output)])
    said = capsys.readouterr().err
    assert exit_code == 0, said
    assert "voice echoed by the server" in said and f"wrote {output}" in said

    recorded = read_recording(output, mouth_probe)
    duration = recorded.frame_times[-1] - recorded.frame_times[0]
    # Loose: on two shared cores the server drops late frames when other work starves it.
    assert len(recorded.frame_times) > 0.5 * FPS * duration, "the video kept coming"
    assert len(recorded.voice) / recorded.rate > duration - 0.5, "the voice runs the whole way"
    offsets, missed = lip_sync_offsets(recorded)
    assert len(offsets) == PHRASES and missed == 0, "the mouth opened for every phrase, and only then"
    offset = float(np.median(offsets))
    print(f"lip sync from the file: {[round(1000 * value) for value in offsets]} ms, median {1000 * offset:+.0f} ms")
    assert -VIDEO_FIRST_LIMIT <= offset <= SOUND_FIRST_LIMIT, f"lips and voice {1000 * offset:+.0f} ms apart"


class FakeCamera:
    """pyvirtualcam's `Camera`, keeping what it is sent."""

    frames: ClassVar[list[npt.NDArray[np.uint8]]] = []

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None) -> None:
        self.device = device or "/dev/video10"
        FakeCamera.frames = []

    def send(self, frame: npt.NDArray[np.uint8]) -> None:
        FakeCamera.frames.append(frame)

    def close(self) -> None:
        """Nothing to release."""


def test_a_capture_device_to_the_camera_with_the_microphone_delayed_into_a_speaker(
    server_process: str, phrases_wav: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ALSA's null devices stand in for a microphone and a loopback speaker (the system's ALSA configuration has
    them); the camera is a fake with pyvirtualcam's interface."""
    monkeypatch.setitem(sys.modules, "pyvirtualcam", SimpleNamespace(Camera=FakeCamera))
    arguments = ["--mic", "null", "--speaker", "null", "--voice-delay", "0.3", "--extra-voice-delay", "0.1"]
    arguments += ["--duration", "3"]
    exit_code = main(["bridge", "--server", server_process, *arguments])
    said = capsys.readouterr().err
    assert exit_code == 0, said
    assert "delayed 0.4 s" in said and "virtual camera /dev/video10" in said
    assert len(FakeCamera.frames) > 25 and {frame.shape for frame in FakeCamera.frames} == {(512, 512, 3)}


def test_without_the_vcam_extra_the_bridge_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    assert main(["bridge", "--server", "http://127.0.0.1:9"]) == 1
    assert "pip install 'echomimic-live[vcam]'" in capsys.readouterr().err


def test_without_a_virtual_camera_device_the_bridge_says_how_to_create_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_device(*args: object, **kwargs: object) -> None:
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99].")

    monkeypatch.setitem(sys.modules, "pyvirtualcam", SimpleNamespace(Camera=no_device))
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["bridge", "--server", "http://127.0.0.1:9", "--camera", "/dev/video10"]) == 1
    said = capsys.readouterr().err
    assert "No v4l2 loopback device" in said and "modprobe v4l2loopback" in said and "--camera /dev/video10" in said


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--voice-delay", "soon"], "--voice-delay is 'auto' or a number of seconds"),
        (["--extra-voice-delay", "9"], "--extra-voice-delay must be between 0 and 5 seconds, not 9"),
        (["--mic", "missing.wav", "--sink", "out.mp4"], "the microphone file missing.wav does not exist"),
        (["--sink", "/no/such/folder/out.mp4"], "the folder /no/such/folder does not exist"),
    ],
)
def test_bad_bridge_arguments_are_one_line_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bridge", "--server", "http://127.0.0.1:9", *arguments]) == 1
    said = capsys.readouterr().err
    assert message in said and said.count("\n") == 1
