"""`echolive render`: a portrait and a speech file in, an MP4 with the original audio out, with a progress bar.

The lite renderer goes through the same streaming core a live session uses (VAD, windows, idle motion), on a
virtual clock, so an offline render shows exactly what a live viewer would see. EchoMimic renders the whole clip
with its own context-window sampler, as the official offline pipeline does.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from echomimic.progress import ProgressEvent
from server.media_files import VideoFileWriter, read_speech
from server.renderers import ECHOMIMIC_FPS, create_renderer, echomimic_weights_dir, require_echomimic_packages
from server.settings import DEFAULT_SIZE, check_frame_size
from streaming.frames import SAMPLE_RATE, FloatAudio, RgbImage
from streaming.lite.default_portrait import load_portrait
from streaming.offline import stream_offline


def render_to_file(
    image: Path,
    audio: Path,
    output: Path,
    renderer_name: str,
    weights_dir: Path | None,
    fps: float | None,
    size: int = DEFAULT_SIZE,
) -> int:
    """Render and write the video; returns the number of frames written."""
    if output.suffix.lower() not in {".mp4", ".mov", ".mkv"}:
        raise ValueError(f"the output must be an .mp4, .mov or .mkv file, not {output.name!r}")
    check_frame_size(size)
    portrait = load_portrait(image)
    speech = read_speech(audio)
    if renderer_name == "echomimic":
        frames, frame_size, frame_rate = _echomimic_frames(portrait, speech, weights_dir, fps, size)
        with VideoFileWriter(output, frame_rate, frame_size, audio) as writer:
            for picture in tqdm(frames, total=len(frames), unit="frame", desc=f"writing {output.name}"):
                writer.write(picture)
        return writer.frames_written

    renderer = create_renderer(renderer_name, fps, weights_dir, size)
    avatar = renderer.prepare_avatar(portrait)
    total = math.ceil(len(speech) / SAMPLE_RATE * renderer.fps)
    with (
        VideoFileWriter(output, renderer.fps, renderer.frame_size, audio) as writer,
        tqdm(total=total, unit="frame", desc=f"rendering {output.name}") as progress,
    ):

        async def write_frames() -> None:
            async for frame in stream_offline(renderer, avatar, speech):
                writer.write(frame.image)
                progress.update()

        asyncio.run(write_frames())
    return writer.frames_written


def _echomimic_frames(
    portrait: RgbImage, speech: FloatAudio, weights_dir: Path | None, fps: float | None, size: int
) -> tuple[npt.NDArray[np.uint8], tuple[int, int], float]:
    folder = echomimic_weights_dir(weights_dir)
    require_echomimic_packages()
    from echomimic.offline import render_clip

    frame_rate = fps if fps is not None else ECHOMIMIC_FPS
    with _StageBars() as bars:
        frames = render_clip(folder, portrait, speech, frame_rate, progress=bars.update, size=size)
    height, width = frames.shape[1:3]
    return frames, (width, height), frame_rate


class _StageBars:
    """One progress bar per stage of a long model run (loading, preparing, denoising, decoding)."""

    def __init__(self) -> None:
        self._bar: tqdm[None] | None = None
        self._stage = ""

    def update(self, event: ProgressEvent) -> None:
        if event.stage != self._stage or self._bar is None:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=event.stage, unit="step")
        self._bar.update(event.done - self._bar.n)
        if event.detail:
            self._bar.set_postfix_str(event.detail, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> _StageBars:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
