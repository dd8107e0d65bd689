"""The reference dictionary shared by both reference kinds (language and mask).

Every reference, whatever its source, is turned into the same four things per feature level:
keys, values, a key-padding mask and a pooled embedding. UniFusion consumes exactly this.

Naming: ``B`` batch, ``N`` reference tokens, ``C`` channels (256), ``L`` levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ReferenceFeatures:
    """Keys, values, padding and pooled embedding of a reference, per level.

    A language reference has one entry that serves every level (``len(refs) == 1``); a mask
    reference has one entry per visual level.

    Attributes:
        refs: per level ``[B, N, C]`` attention keys (before ``norm_l``).
        values: per level ``[B, N, C]`` attention values.
        padding_mask: per level ``[B, N]`` bool, True where the token is padding.
        embeds: per level ``[B, C]`` pooled embedding that drives the adaLN modulation.
    """

    refs: list[Tensor]
    values: list[Tensor]
    padding_mask: list[Tensor]
    embeds: list[Tensor]

    def __post_init__(self) -> None:
        n = len(self.refs)
        if not (len(self.values) == len(self.padding_mask) == len(self.embeds) == n) or n == 0:
            raise ValueError("ReferenceFeatures needs the same, non-zero number of levels in every field")

    @property
    def num_levels(self) -> int:
        return len(self.refs)

    @property
    def batch_size(self) -> int:
        return self.refs[0].shape[0]

    def level(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(refs, values, padding_mask, embeds)`` of level ``index`` (a single-level reference serves all)."""
        i = 0 if self.num_levels == 1 else index
        return self.refs[i], self.values[i], self.padding_mask[i], self.embeds[i]

    def index_select(self, index: Tensor | list[int]) -> "ReferenceFeatures":
        """Select batch entries (e.g. the objects still tracked)."""
        idx = torch.as_tensor(index, device=self.refs[0].device, dtype=torch.long)
        return ReferenceFeatures(
            [t.index_select(0, idx) for t in self.refs],
            [t.index_select(0, idx) for t in self.values],
            [t.index_select(0, idx) for t in self.padding_mask],
            [t.index_select(0, idx) for t in self.embeds],
        )

    @staticmethod
    def cat_batch(items: list["ReferenceFeatures"]) -> "ReferenceFeatures":
        """Stack references of equal token counts along the batch axis (one entry per object)."""
        if not items:
            raise ValueError("cat_batch needs at least one reference")
        n = items[0].num_levels
        return ReferenceFeatures(
            [torch.cat([it.refs[i] for it in items], 0) for i in range(n)],
            [torch.cat([it.values[i] for it in items], 0) for i in range(n)],
            [torch.cat([it.padding_mask[i] for it in items], 0) for i in range(n)],
            [torch.cat([it.embeds[i] for it in items], 0) for i in range(n)],
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ReferenceFeatures":
        def mv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return ReferenceFeatures(
            [mv(t) for t in self.refs],
            [mv(t) for t in self.values],
            [t.to(device) for t in self.padding_mask],
            [mv(t) for t in self.embeds],
        )
