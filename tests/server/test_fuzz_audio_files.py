"""WAV files with absurd headers for `echolive render`: sample rates of 0, 1 or a billion, no channels or hundreds,
odd sample widths, data shorter or longer than declared. Reading one gives 16 kHz mono speech or a
`MediaFileError` (which the command prints as one line), never another exception; and the command itself turns
such a file into a video or that one line, never a traceback."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.cli import main
from server.media_files import MediaFileError, read_speech
from streaming.lite.default_portrait import default_portrait_path
from tests.server.fuzzing import examples, tried

FORMAT_TAGS = [1, 3, 0, 2, 0xFFFE, 0xFFFF]
"""PCM, IEEE float, none, ADPCM, extensible (without its extension) and nonsense."""


def wav_bytes(format_tag: int, channels: int, sample_rate: int, bits: int, data: bytes, declared: int) -> bytes:
    block_align = channels * bits // 8
    byte_rate = sample_rate * block_align
    fmt = struct.pack("<HHIIHH", format_tag, channels, sample_rate, byte_rate % 2**32, block_align % 2**16, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


ABSURD_FIELDS: dict[str, st.SearchStrategy[int]] = {
    "format_tag": st.sampled_from(FORMAT_TAGS),
    "channels": st.sampled_from([0, 2, 7, 255, 65535]),
    "sample_rate": st.sampled_from([0, 1, 7, 3_999, 4_000, 768_000, 768_001, 10**9, 2**32 - 1]),
    "bits": st.sampled_from([0, 1, 7, 8, 24, 32, 64, 65535]),
    "declared": st.sampled_from([0, 1, 2**32 - 1]),
}


@st.composite
def absurd_wavs(draw: st.DrawFn) -> bytes:
    """A plausible 16 kHz mono PCM16 WAV with one to three header fields made absurd."""
    data = draw(st.binary(min_size=2, max_size=4000))
    fields = {"format_tag": 1, "channels": 1, "sample_rate": 16_000, "bits": 16, "declared": len(data)}
    for name in draw(st.lists(st.sampled_from(sorted(ABSURD_FIELDS)), min_size=1, max_size=3, unique=True)):
        fields[name] = draw(ABSURD_FIELDS[name])
    return wav_bytes(data=data, **fields)


@examples(60)
@given(wav=absurd_wavs())
def test_an_absurd_wav_reads_as_speech_or_raises_a_media_file_error(tmp_path: Path, wav: bytes) -> None:
    path = tmp_path / "absurd.wav"
    path.write_bytes(wav)
    try:
        speech = read_speech(path)
    except MediaFileError as error:
        tried("absurd WAV → read_speech → refused")
        assert str(error)
    else:
        tried("absurd WAV → read_speech → read")
        assert speech.dtype == np.float32 and speech.ndim == 1 and len(speech) > 0


@pytest.mark.parametrize(
    "wav",
    [
        pytest.param(wav_bytes(1, 1, 1, 16, b"\x00\x10" * 50, 100), id="1-Hz"),
        pytest.param(wav_bytes(1, 1, 7, 16, b"\x00\x10" * 50, 100), id="7-Hz"),
        pytest.param(wav_bytes(1, 1, 10**9, 16, b"\x00\x10" * 5000, 10_000), id="1-GHz"),
        pytest.param(wav_bytes(1, 1, 16_000, 16, b"\x00\x10", 2), id="one-sample"),
        pytest.param(wav_bytes(1, 0, 16_000, 16, b"\x00\x10" * 50, 100), id="no-channels"),
        pytest.param(wav_bytes(1, 1, 0, 16, b"\x00\x10" * 50, 100), id="0-Hz"),
    ],
)
def test_render_turns_an_absurd_wav_into_a_video_or_one_clear_line(
    tmp_path: Path, wav: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "absurd.wav"
    audio.write_bytes(wav)
    output = tmp_path / "out.mp4"
    arguments = ["render", "--image", str(default_portrait_path()), "--audio", str(audio), "-o", str(output)]
    code = main([*arguments, "--size", "64"])
    tried("absurd WAV → echolive render")
    # Progress bars come first; a refusal is the one last line, and no half-written video is left behind.
    last_line = capsys.readouterr().err.strip().replace("\r", "\n").splitlines()[-1]
    if code == 0:
        assert output.stat().st_size > 0
    else:
        assert last_line.startswith("echolive render: error:"), last_line
        assert "Traceback" not in last_line
        assert not output.exists()
