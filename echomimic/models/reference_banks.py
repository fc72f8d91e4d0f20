"""Reference banks: the features the reference UNet writes and the denoising UNet reads.

EchoMimic conditions every frame on the portrait through "reference attention". The reference UNet runs once on
the portrait latent and keeps, for each transformer block, the `norm1` output (the tokens that block would attend
over). The denoising UNet's block with the same module name appends those tokens to its own keys and values.
Here the banks travel as an explicit value between the two models instead of being stashed on the modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ReferenceBanks:
    """One bank per transformer block, keyed by the block's module name (identical in both UNets).

    `tensors[name]` is [B, h*w, C]. Insertion order is the official reader pairing order (see `reader_pairing_order`).
    """

    tensors: dict[str, torch.Tensor]

    def rounded_to_fp16(self) -> ReferenceBanks:
        """Banks rounded through float16 and back, as the official reader stores them whatever the model dtype."""
        return ReferenceBanks({name: bank.to(torch.float16).to(bank.dtype) for name, bank in self.tensors.items()})

    def repeat_for_cfg(self) -> ReferenceBanks:
        """Banks for a classifier-free-guidance batch [uncond; cond]: the batch repeated twice."""
        return ReferenceBanks({name: torch.cat([bank, bank]) for name, bank in self.tensors.items()})


def reader_pairing_order(blocks_with_widths: Iterable[tuple[str, int]]) -> list[str]:
    """Block names in the order the official reader pairs writer and reader blocks.

    The official code collects blocks depth-first in module registration order (down_blocks, up_blocks, mid_block)
    and stable-sorts them by descending channel width. `blocks_with_widths` must come in that registration order.
    """
    return [name for name, _ in sorted(blocks_with_widths, key=lambda name_width: -name_width[1])]
