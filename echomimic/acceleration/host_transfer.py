"""Tensors between host and device without holding the GPU hostage: a window's inputs in, its frames out.

A pageable `.cpu()` copy blocks the calling thread until the device has finished everything queued before it, and
the copy itself goes through a driver staging buffer. A window's frames are instead converted to uint8 on the
device, copied into page-locked (pinned) host memory asynchronously, and marked with a CUDA event: the thread that
started the copy can release the model lock first and wait on the event afterwards, so the next batch's kernels
are queued while this one's frames cross the bus. On the CPU the same calls cost nothing and return at once.

Inputs that start on the host (a window's noise, its pin masks and indexes, the timesteps) go the other way through
pinned memory with `to_device`: a pageable host-to-device copy blocks the host until the device has caught up, which
would stall the queue of kernels in the middle of a window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch


@dataclass(frozen=True)
class PendingFrames:
    """Frames on their way to the host; `wait()` returns them once the copy has landed."""

    host: torch.Tensor
    """[F, H, W, 3] uint8, pinned when the frames came from a CUDA device."""
    copied: torch.cuda.Event | None

    def wait(self) -> npt.NDArray[np.uint8]:
        if self.copied is not None:
            self.copied.synchronize()
        return self.host.numpy()


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`; from the host to a CUDA device through pinned memory, without blocking the host."""
    if tensor.device == device or device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def start_frame_transfer(pictures: torch.Tensor) -> PendingFrames:
    """pictures: [F, 3, H, W] floats in [0, 1] on any device -> the copy to [F, H, W, 3] uint8 host frames, started.

    Call it where the GPU work was queued (under the model lock); call `wait()` after releasing the lock."""
    frames = (pictures * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    if frames.device.type != "cuda":
        return PendingFrames(frames.cpu(), None)
    host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(frames, non_blocking=True)
    copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
    copied.record()
    return PendingFrames(host, copied)
