"""One GPU, many sessions: windows that are ready together run as one batch instead of queueing one by one.

Each session's render thread hands its window to `WindowBatcher.run` and waits. The first thread to find the
model free becomes the leader: it takes the oldest waiting window and every other waiting window of the same
length (up to `max_batch`), and under the model lock prepares each one (its `prepare` step: encoding frames to
latents, whisper features), denoises them as one batch, decodes all their new frames together, and hands each
session its own result. Then it leaves, or leads again if its own window was not among those taken. No thread is
added, and a lone session runs exactly as it would without batching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from echomimic.live_sampler import WindowInputs, denoise_windows
from echomimic.pipelines.pipeline_echomimic import EchoMimicPipeline


@dataclass(frozen=True)
class RenderedWindow:
    latents: torch.Tensor
    """[1, 4, F, h, w] every frame of the window, its context first."""
    images: npt.NDArray[np.uint8]
    """[new frames, H, W, 3] the frames after the first `decode_from`."""


@dataclass(eq=False)
class WindowJob:
    prepare: Callable[[], WindowInputs]
    """Runs under the model lock, on the leader's thread, right before sampling."""
    num_frames: int
    decode_from: int
    """Frames before this one are context: not decoded."""
    result: RenderedWindow | None = field(default=None, init=False)
    error: BaseException | None = field(default=None, init=False)
    done: bool = field(default=False, init=False)


class WindowBatcher:
    def __init__(
        self,
        pipeline: EchoMimicPipeline,
        model_lock: threading.Lock,
        num_inference_steps: int,
        guidance_scale: float,
        decode_batch: int,
        max_batch: int,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._pipeline = pipeline
        self._model_lock = model_lock
        self._steps = num_inference_steps
        self._guidance = guidance_scale
        self._decode_batch = decode_batch
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []
        """How many windows each batch held, for inspection (bounded: the last 1000)."""
        self._waiting: list[WindowJob] = []
        self._leading = False
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        """Windows handed in and not yet taken into a batch."""
        with self._changed:
            return len(self._waiting)

    def run(self, job: WindowJob) -> RenderedWindow | None:
        """Render `job`, batched with whatever else is waiting; None when it was stopped."""
        with self._changed:
            self._waiting.append(job)
            while not job.done:
                if self._leading:
                    self._changed.wait()
                    continue
                self._leading = True
                batch = self._take_batch()
                self._changed.release()
                try:
                    self._render(batch)
                except BaseException as error:  # every session in the batch sees the failure, not only the leader's
                    for taken in batch:
                        taken.error = error
                finally:
                    self._changed.acquire()
                    self._leading = False
                    for taken in batch:
                        taken.done = True
                    self._changed.notify_all()
        if job.error is not None:
            raise job.error
        return job.result

    def _take_batch(self) -> list[WindowJob]:
        length = self._waiting[0].num_frames
        batch = [job for job in self._waiting if job.num_frames == length][: self.max_batch]
        self._waiting = [job for job in self._waiting if job not in batch]
        self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
        return batch

    def _render(self, batch: list[WindowJob]) -> None:
        with self._model_lock:
            inputs = [job.prepare() for job in batch]
            latents = denoise_windows(self._pipeline, inputs, self._steps, self._guidance)
            finished = [(job, window) for job, window in zip(batch, latents, strict=True) if window is not None]
            if not finished:
                return
            new_frames = torch.cat([window[:, :, job.decode_from :] for job, window in finished], dim=2)
            images = self._pipeline.decode_to_uint8(new_frames, self._decode_batch)
        start = 0
        for job, window in finished:
            count = job.num_frames - job.decode_from
            job.result = RenderedWindow(window, images[start : start + count])
            start += count
