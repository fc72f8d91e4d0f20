"""The video writer: a finished render has both tracks; a failed one leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from server.media_files import VideoFileWriter
from tests.streaming.signals import write_wav

FRAME = np.full((48, 64, 3), 128, dtype=np.uint8)


@pytest.fixture
def half_second_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "voice.wav", np.zeros(8_000, dtype=np.float32), 16_000)


def test_a_finished_render_has_video_and_audio(half_second_wav: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    with VideoFileWriter(output, 25, (64, 48), half_second_wav) as writer:
        for _ in range(12):
            writer.write(FRAME)
    with av.open(str(output)) as container:
        assert [stream.type for stream in container.streams] == ["video", "audio"]
        assert sum(1 for _ in container.decode(video=0)) == 12


def test_a_render_that_fails_midway_leaves_no_truncated_file(half_second_wav: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    with (
        pytest.raises(RuntimeError, match="renderer broke"),
        VideoFileWriter(output, 25, (64, 48), half_second_wav) as writer,
    ):
        writer.write(FRAME)
        raise RuntimeError("renderer broke")
    assert not output.exists()
