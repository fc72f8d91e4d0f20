"""A portrait prepared for live EchoMimic, and its idle frames.

Preparing crops the portrait around its face as the official preprocessing does, then computes once everything
that no window changes: the VAE latent, the reference UNet's banks with every reader layer's key and value
projections (`EchoUNet3DConditionModel.project_banks`), and the face locator's features.

Idle frames are the crop itself, alive: eyelids closed by each pose's blink (when the renderer was given a way to
draw them), then rolled about the face centre, scaled about the bottom centre by breath, and shifted by the head
offset. No diffusion runs while nobody speaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import torch

from echomimic.pipelines.pipeline_echomimic import ReferenceConditioning
from streaming.frames import IdlePose, RgbImage
from streaming.renderer import AvatarMemory

BREATH_SCALE = 0.006
"""Full breath (phase ±1) scales the portrait by ±0.6% about its bottom centre: visible, never distracting."""


class Eyelids(Protocol):
    """Draws blinks on one portrait (`streaming.lite.eyelids.PortraitEyelids` is one)."""

    def close(self, image: RgbImage, closure: float) -> None:
        """Close the eyelids of `image` (the portrait, or a copy) in place by `closure` (0 open, 1 shut)."""
        ...


EyelidsFactory = Callable[[RgbImage], Eyelids]
"""Finds the eyes of a portrait; raises `ValueError` when it cannot."""


@dataclass(frozen=True)
class EchoMimicAvatar:
    """A prepared portrait: the cropped image idle frames are drawn from, and the diffusion conditioning."""

    image: RgbImage
    """[S, S, 3] the portrait cropped around the face, as the model sees it."""
    reference: ReferenceConditioning
    """Latent, banks (with their projections) and face features."""
    face_center: tuple[float, float]
    """(x, y) pixels in `image`."""
    face_width: float
    """Pixels in `image`; idle head offsets are in face widths."""
    eyelids: Eyelids | None
    """None: idle frames do not blink."""


def avatar_memory(avatar: EchoMimicAvatar) -> AvatarMemory:
    """The crop in host memory, and every conditioning tensor where it lives: on the GPU, the banks and their
    projections are most of an avatar. Tensors sharing a storage count it once, whole."""
    reference = avatar.reference
    tensors: list[torch.Tensor] = [reference.latents, reference.face_features, *reference.banks.tensors.values()]
    for bank in reference.banks.projected.values():
        tensors.extend((bank.key, bank.value))
    storages = {
        (str(tensor.device), storage.data_ptr()): (tensor.device.type, storage.nbytes())
        for tensor in tensors
        for storage in [tensor.untyped_storage()]
    }
    host_bytes = avatar.image.nbytes + sum(size for kind, size in storages.values() if kind == "cpu")
    return AvatarMemory(host_bytes, sum(size for kind, size in storages.values() if kind != "cpu"))


def idle_frame(avatar: EchoMimicAvatar, pose: IdlePose) -> RgbImage:
    """The portrait with the pose's blink, then rolled, breathing and shifted."""
    image = avatar.image
    if avatar.eyelids is not None and pose.blink > 0:
        image = image.copy()
        avatar.eyelids.close(image, pose.blink)
    size = image.shape[0]
    roll = np.asarray(cv2.getRotationMatrix2D(avatar.face_center, pose.head_roll, 1.0), np.float64)  # [2, 3]
    breath_scale = 1.0 + BREATH_SCALE * pose.breath
    breath = np.asarray(cv2.getRotationMatrix2D((size / 2, float(size)), 0.0, breath_scale), np.float64)
    affine = _compose(breath, roll)
    affine[:, 2] += np.array(pose.head_offset) * avatar.face_width
    posed = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(posed, dtype=np.uint8)


def _compose(outer: npt.NDArray[np.float64], inner: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The 2x3 affine that applies `inner`, then `outer`."""
    composed: npt.NDArray[np.float64] = (np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]]))[:2]
    return composed
