"""What a prepared EchoMimic avatar holds, host and device, as the server's avatar cache counts it."""

from __future__ import annotations

import numpy as np
import torch

from echomimic.live_avatar import EchoMimicAvatar, avatar_memory
from echomimic.models.reference_banks import ProjectedBank, ReferenceBanks
from echomimic.pipelines.pipeline_echomimic import ReferenceConditioning


def avatar(latents: torch.Tensor) -> EchoMimicAvatar:
    bank = torch.zeros(1, 16, 8)  # [B, h*w, C] float32: 512 bytes
    key_and_value = torch.zeros(2, 16, 8)  # one storage (1 kB) that both projections are views of
    banks = ReferenceBanks({"down": bank, "up": bank}, {"down": ProjectedBank(key_and_value[0], key_and_value[1])})
    reference = ReferenceConditioning(latents=latents, banks=banks, face_features=torch.zeros(1, 4, 1, 2, 2))
    return EchoMimicAvatar(
        image=np.zeros((8, 8, 3), np.uint8), reference=reference, face_center=(4, 4), face_width=4, eyelids=None
    )


def test_each_storage_is_counted_once_where_it_lives() -> None:
    on_host = avatar(latents=torch.zeros(1, 4, 2, 2))
    image, bank, projections, face, latents = 8 * 8 * 3, 512, 1024, 64, 64
    assert avatar_memory(on_host).host_bytes == image + bank + projections + face + latents
    assert avatar_memory(on_host).device_bytes == 0
    on_device = avatar(latents=torch.zeros(1, 4, 2, 2, device="meta"))
    assert avatar_memory(on_device).host_bytes == image + bank + projections + face
    assert avatar_memory(on_device).device_bytes == latents
