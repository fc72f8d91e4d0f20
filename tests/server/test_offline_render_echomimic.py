"""`echolive render --renderer echomimic`: the model's frames and progress reach the file and the terminal.

The model itself is tested in `tests/echomimic/` (conformance, and `render_clip` on a tiny weights folder); here
`render_clip` is replaced by a fake that reports progress like the real one, so this runs in a moment.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

import echomimic.offline
from echomimic.progress import ProgressCallback, ProgressEvent
from server.offline_render import render_to_file
from server.renderers import ECHOMIMIC_FPS
from streaming.lite.default_portrait import default_portrait_path
from tests.streaming.signals import write_wav

FRAME_SIDE = 64


def fake_render_clip(
    weights_dir: Path,
    portrait_rgb: npt.NDArray[np.uint8],
    waveform_16k: npt.NDArray[np.float32],
    fps: float,
    progress: ProgressCallback | None = None,
    *,
    size: int,
    num_inference_steps: int,
) -> npt.NDArray[np.uint8]:
    frame_count = int(np.ceil(len(waveform_16k) / 16_000 * fps))
    assert progress is not None
    for stage, total in (("loading", 3), ("denoising", 6), ("decoding", frame_count)):
        for done in range(1, total + 1):
            progress(ProgressEvent(stage, done, total, f"{stage} {done}"))
    shades = np.linspace(0, 255, frame_count, dtype=np.uint8)
    return np.broadcast_to(shades[:, None, None, None], (frame_count, size, size, 3)).copy()


@pytest.fixture
def one_second_of_tone(tmp_path: Path) -> Path:
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000)).astype(np.float32)
    return write_wav(tmp_path / "tone.wav", tone, 16_000)


def test_echomimic_frames_and_audio_are_written_with_progress(
    one_second_of_tone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(echomimic.offline, "render_clip", fake_render_clip)
    output = tmp_path / "out.mp4"

    written = render_to_file(
        default_portrait_path(), one_second_of_tone, output, "echomimic", tmp_path, None, size=FRAME_SIDE
    )

    assert written == ECHOMIMIC_FPS
    with av.open(str(output)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height, float(video.average_rate)) == (FRAME_SIDE, FRAME_SIDE, ECHOMIMIC_FPS)
        brightness = [frame.to_ndarray(format="gray").mean() for frame in container.decode(video=0)]
        # AAC ends on a whole frame of 1024 samples, so the track may run up to one frame long.
        assert audio.duration is not None and audio.time_base is not None
        extra_samples = audio.duration * audio.time_base * audio.rate - audio.rate
        assert 0 <= extra_samples <= 1024
    assert len(brightness) == ECHOMIMIC_FPS
    assert brightness[0] < 20 < 235 < brightness[-1]
    progress_output = capsys.readouterr().err
    for stage in ("loading", "denoising", "decoding"):
        assert stage in progress_output


def test_echomimic_without_weights_names_the_flag(one_second_of_tone: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--weights DIR"):
        render_to_file(default_portrait_path(), one_second_of_tone, tmp_path / "out.mp4", "echomimic", None, None)
