"""Reference banks: the features the reference UNet writes and the denoising UNet reads.

EchoMimic conditions every frame on the portrait through "reference attention". The reference UNet runs once on
the portrait latent and keeps, for each transformer block, the `norm1` output (the tokens that block would attend
over). The denoising UNet's block with the same module name appends those tokens to its own keys and values.
Here the banks travel as an explicit value between the two models instead of being stashed on the modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ProjectedBank:
    """A bank already through its reader block's key and value projections, each [B, h*w, C]: the projections
    are linear and bias-free, so projecting the bank once per portrait gives what every denoising call would."""

    key: torch.Tensor
    value: torch.Tensor


Bank = torch.Tensor | ProjectedBank
"""What a reader block attends to besides its own tokens."""


@dataclass(frozen=True)
class ReferenceBanks:
    """One bank per transformer block, keyed by the block's module name (identical in both UNets).

    `tensors[name]` is [B, h*w, C]. Insertion order is the official reader pairing order (see `BankLayout`).
    `projected` optionally holds the same banks through the reader's key and value projections
    (`EchoUNet3DConditionModel.project_banks`); readers use those where present.
    """

    tensors: dict[str, torch.Tensor]
    projected: dict[str, ProjectedBank] = field(default_factory=dict)

    def rounded_to_fp16(self) -> ReferenceBanks:
        """Banks rounded through float16 and back, as the official reader stores them whatever the model dtype.
        Projections of the unrounded banks are dropped."""
        return ReferenceBanks({name: bank.to(torch.float16).to(bank.dtype) for name, bank in self.tensors.items()})

    @classmethod
    def batch(cls, items: list[ReferenceBanks]) -> ReferenceBanks:
        """The banks of several portraits as one batch, in order (every item must hold the same blocks)."""
        first = items[0]
        return cls(
            {name: torch.cat([item.tensors[name] for item in items]) for name in first.tensors},
            {
                name: ProjectedBank(
                    torch.cat([item.projected[name].key for item in items]),
                    torch.cat([item.projected[name].value for item in items]),
                )
                for name in first.projected
            },
        )

    def select(self, indices: torch.Tensor) -> ReferenceBanks:
        """The batch items at `indices` (a 1-D index tensor)."""
        return ReferenceBanks(
            {name: bank.index_select(0, indices.to(bank.device)) for name, bank in self.tensors.items()},
            {
                name: ProjectedBank(
                    bank.key.index_select(0, indices.to(bank.key.device)),
                    bank.value.index_select(0, indices.to(bank.value.device)),
                )
                for name, bank in self.projected.items()
            },
        )

    def repeat_for_cfg(self) -> ReferenceBanks:
        """Banks for a classifier-free-guidance batch [uncond; cond]: the batch repeated twice."""
        return ReferenceBanks(
            {name: torch.cat([bank, bank]) for name, bank in self.tensors.items()},
            {
                name: ProjectedBank(torch.cat([bank.key, bank.key]), torch.cat([bank.value, bank.value]))
                for name, bank in self.projected.items()
            },
        )


@dataclass(frozen=True)
class BankLayout:
    """Where a UNet's banked transformer blocks sit, by module name.

    `order` is the official reader pairing order: the official code collects the blocks depth-first in module
    registration order (down_blocks, up_blocks, mid_block) and stable-sorts them by descending channel width.
    `by_top_level_block` lists the blocks inside each top-level block ("down_blocks.1", "mid_block", ...) in
    registration order, the order that block's forward produces or consumes their banks.
    """

    order: list[str]
    by_top_level_block: dict[str, list[str]]

    @classmethod
    def from_blocks(cls, blocks_with_widths: Iterable[tuple[str, int]]) -> BankLayout:
        """`blocks_with_widths`: (module name, channel width) of every banked block, in module registration order."""
        blocks = list(blocks_with_widths)
        by_top_level_block: dict[str, list[str]] = {}
        for name, _ in blocks:
            by_top_level_block.setdefault(name.split(".attentions.")[0], []).append(name)
        order = [name for name, _ in sorted(blocks, key=lambda name_width: -name_width[1])]
        return cls(order, by_top_level_block)

    def blocks_in(self, top_level_block: str) -> list[str]:
        """The banked blocks inside `top_level_block`; none for a block without attention."""
        return self.by_top_level_block.get(top_level_block, [])

    def banks_in(self, top_level_block: str, banks: ReferenceBanks) -> list[Bank]:
        """The banks `top_level_block`'s transformers read, in the order its forward consumes them (projected
        where the projection is there)."""
        return [banks.projected.get(name, banks.tensors[name]) for name in self.blocks_in(top_level_block)]
