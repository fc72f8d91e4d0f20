"""One GPU, many sessions: windows that are ready together run as one batch instead of queueing one by one.

Each session's render thread hands its window to `WindowBatcher.run` and waits. The first thread to find the
model free becomes the leader: it takes the oldest waiting window and every other waiting window of the same
length (up to `max_batch`), and under the model lock prepares each one (its `prepare` step: encoding frames to
latents, whisper features), denoises them as one batch, decodes all their new frames together and starts their
copy to the host. It hands the lead on as it leaves the lock, so the next batch is queued on the GPU while these
frames cross to the host; then it gives each session its own result, and leaves, or leads again if its own window
was not among those taken. No thread is added, and a lone session runs exactly as it would without batching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from echomimic.acceleration.host_transfer import PendingFrames, start_frame_transfer
from echomimic.acceleration.tiny_decoder import FrameDecoder
from echomimic.live_sampler import DenoisingUNet, WindowInputs, denoise_windows
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
        unet: DenoisingUNet,
        decoder: FrameDecoder,
        model_lock: threading.Lock,
        num_inference_steps: int,
        guidance_scale: float,
        max_batch: int,
        deep_feature_interval: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._pipeline = pipeline
        self._unet = unet
        self._decoder = decoder
        self._model_lock = model_lock
        self._steps = num_inference_steps
        self._guidance = guidance_scale
        self._deep_feature_interval = deep_feature_interval
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []
        """How many windows each batch held, for inspection (bounded: the last 1000)."""
        self.window_device_bytes = 0
        """The most device memory one window of a batch has taken beyond what was allocated before it (its share of
        the batch's peak), measured on CUDA devices; 0 elsewhere or before the first batch."""
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
                if self._leading or job not in self._waiting:  # in someone's batch already, or someone leads
                    self._changed.wait()
                    continue
                self._leading = True
                batch = self._take_batch()
                self._changed.release()
                try:
                    self._lead(batch)
                finally:
                    self._changed.acquire()
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

    def _lead(self, batch: list[WindowJob]) -> None:
        """Render `batch`, handing the lead on as soon as its GPU work is queued, before its frames reach the host;
        a failure reaches every session in the batch, not only the leader's."""
        try:
            try:
                with self._model_lock:
                    queued = self._queue(batch)
            finally:
                self._hand_on_lead()
            if queued is not None:
                finished, pending = queued
                images = pending.wait()
                start = 0
                for job, window in finished:
                    count = job.num_frames - job.decode_from
                    job.result = RenderedWindow(window, images[start : start + count])
                    start += count
        except BaseException as error:
            for taken in batch:
                taken.error = error

    def _queue(self, batch: list[WindowJob]) -> tuple[list[tuple[WindowJob, torch.Tensor]], PendingFrames] | None:
        """Sample and decode the batch and start the frames' copy to the host; None when every window was stopped."""
        device = self._pipeline.vae.device
        measured = device.type == "cuda"
        if measured:
            torch.cuda.reset_peak_memory_stats(device)
            allocated_before = torch.cuda.memory_allocated(device)
        inputs = [job.prepare() for job in batch]
        latents = denoise_windows(
            self._pipeline, self._unet, inputs, self._steps, self._guidance, self._deep_feature_interval
        )
        finished = [(job, window) for job, window in zip(batch, latents, strict=True) if window is not None]
        if not finished:
            return None
        new_frames = torch.cat([window[:, :, job.decode_from :] for job, window in finished], dim=2)
        pictures = self._decoder.decode(new_frames)  # [F, 3, H, W] in [0, 1], on the device
        transfer = start_frame_transfer(pictures)
        if measured:
            # Allocations happen as work is queued, so the peak is known here even before the GPU has run it.
            window_bytes = (torch.cuda.max_memory_allocated(device) - allocated_before) // len(batch)
            self.window_device_bytes = max(self.window_device_bytes, window_bytes)
        return finished, transfer

    def _hand_on_lead(self) -> None:
        with self._changed:
            self._leading = False
            self._changed.notify_all()
