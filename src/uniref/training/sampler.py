"""Multi-dataset batch sampling: per-dataset ratios and batch sizes, one dataset per batch, exact resume.

Every batch is a pure function of ``(seed, rank, world_size, iteration)``:

* the dataset of iteration ``i`` on rank ``r`` is drawn with probabilities proportional to the ratios, from a
  generator seeded by ``(seed, r, i // block)`` (the draws of a block are made at once);
* the samples of dataset ``d`` come from an endless stream of epochs, each a permutation seeded by
  ``(seed, d, epoch)``; rank ``r`` reads positions ``r, r + W, r + 2W, ...`` of that stream, so that in
  expectation the ranks see disjoint samples of an epoch;
* the augmentation seed of the batch is derived from ``(seed, r, i)``.

So the sampler position is just the iteration number: resuming at iteration ``i`` replays the dataset
choices of the iterations before it (cheap array work) and continues exactly, however many batches a
DataLoader had prefetched when the run stopped. Different ranks may draw different datasets (tasks) in the
same iteration, as in the official training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BatchPlan", "MultiDatasetSampler"]


@dataclass(frozen=True)
class BatchPlan:
    """What one batch holds: the dataset index, the sample indices and the augmentation seed."""

    iteration: int
    dataset: int
    indices: tuple[int, ...]
    seed: int


class MultiDatasetSampler:
    """Deterministic, resumable, DDP-aware batch plans over several datasets.

    Args:
        sizes: number of entries of each dataset (all > 0).
        ratios: sampling weights (normalised here; all >= 0, at least one > 0).
        batch_sizes: per-rank batch size of each dataset.
        seed: the run seed.
        rank, world_size: this process and the number of processes.
        start_iteration: the first iteration to plan (resume).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        ratios: Sequence[float],
        batch_sizes: Sequence[int],
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
        block: int = 1024,
    ):
        if not (len(sizes) == len(ratios) == len(batch_sizes)) or not sizes:
            raise ValueError("sizes, ratios and batch_sizes need one entry per dataset")
        if any(int(n) <= 0 for n in sizes):
            raise ValueError(f"every dataset needs at least one sample, got sizes {list(sizes)}")
        if any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f"ratios must be >= 0 with a positive sum, got {list(ratios)}")
        if any(int(b) < 1 for b in batch_sizes):
            raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sizes = [int(n) for n in sizes]
        p = np.asarray(ratios, dtype=np.float64)
        self.probabilities = p / p.sum()
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.seed, self.rank, self.world_size, self.block = int(seed), int(rank), int(world_size), int(block)
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}
        self._block_cache: tuple[int, np.ndarray] | None = None
        self.iteration = 0
        self._drawn = [0] * len(self.sizes)  # samples this rank has read from each dataset so far
        self.seek(start_iteration)

    # ------------------------------------------------------------------ positions
    def _choices(self, block_index: int) -> np.ndarray:
        if self._block_cache is None or self._block_cache[0] != block_index:
            rng = np.random.default_rng([self.seed, self.rank, block_index, 0x5A])
            self._block_cache = (block_index, rng.choice(len(self.sizes), size=self.block, p=self.probabilities))
        return self._block_cache[1]

    def dataset_at(self, iteration: int) -> int:
        """The dataset this rank draws at ``iteration``."""
        return int(self._choices(iteration // self.block)[iteration % self.block])

    def seek(self, iteration: int) -> None:
        """Move to ``iteration``, replaying the dataset choices before it."""
        if iteration < 0:
            raise ValueError("iteration must be >= 0")
        drawn = np.zeros(len(self.sizes), dtype=np.int64)
        full, rest = divmod(iteration, self.block)
        for b in range(full):
            drawn += np.bincount(self._choices(b), minlength=len(self.sizes))
        if rest:
            drawn += np.bincount(self._choices(full)[:rest], minlength=len(self.sizes))
        self._drawn = [int(c) * bs for c, bs in zip(drawn, self.batch_sizes)]
        self.iteration = int(iteration)

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "seed": self.seed, "world_size": self.world_size, "sizes": self.sizes}

    def load_state_dict(self, state: dict) -> None:
        if list(state.get("sizes", self.sizes)) != self.sizes:
            raise ValueError(
                f"the checkpoint's sampler saw dataset sizes {state.get('sizes')}, the configured datasets have "
                f"{self.sizes}: the data changed since the checkpoint was written"
            )
        self.seek(int(state["iteration"]))

    # ------------------------------------------------------------------ sampling
    def _permutation(self, dataset: int, epoch: int) -> np.ndarray:
        key = (dataset, epoch)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 4 * len(self.sizes):
                self._perm_cache.clear()
            rng = np.random.default_rng([self.seed, dataset, epoch, 0xA5])
            self._perm_cache[key] = rng.permutation(self.sizes[dataset])
        return self._perm_cache[key]

    def _take(self, dataset: int, count: int) -> tuple[int, ...]:
        n, out = self.sizes[dataset], []
        for k in range(self._drawn[dataset], self._drawn[dataset] + count):
            position = k * self.world_size + self.rank
            epoch, offset = divmod(position, n)
            out.append(int(self._permutation(dataset, epoch)[offset]))
        self._drawn[dataset] += count
        return tuple(out)

    def next(self) -> BatchPlan:
        """The plan of the current iteration; advances by one."""
        it = self.iteration
        d = self.dataset_at(it)
        indices = self._take(d, self.batch_sizes[d])
        seed = int(np.random.SeedSequence([self.seed, self.rank, it, 0x3C]).generate_state(1, np.uint64)[0] >> 1)
        self.iteration += 1
        return BatchPlan(it, d, indices, seed)

    def __iter__(self) -> Iterator[BatchPlan]:
        while True:
            yield self.next()
