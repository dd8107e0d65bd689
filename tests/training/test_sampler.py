"""Multi-dataset sampler: ratios, per-dataset batch sizes, determinism, exact resume, ranks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from uniref.training.sampler import MultiDatasetSampler


def _plans(sampler, n):
    return [sampler.next() for _ in range(n)]


def test_ratios_batch_sizes_and_one_dataset_per_batch():
    s = MultiDatasetSampler([50, 30, 7], [0.2, 0.6, 0.2], [2, 3, 1], seed=1, block=64)
    plans = _plans(s, 3000)
    counts = Counter(p.dataset for p in plans)
    freq = np.array([counts[d] for d in range(3)]) / len(plans)
    np.testing.assert_allclose(freq, [0.2, 0.6, 0.2], atol=0.03)
    for p in plans:
        assert len(p.indices) == [2, 3, 1][p.dataset]
        assert all(0 <= i < [50, 30, 7][p.dataset] for i in p.indices)
    assert [p.iteration for p in plans] == list(range(3000))


def test_epochs_cover_each_dataset_before_repeating():
    s = MultiDatasetSampler([10], [1.0], [2], seed=3)
    drawn = [i for p in _plans(s, 10) for i in p.indices]
    assert sorted(drawn[:10]) == list(range(10)) and sorted(drawn[10:]) == list(range(10))
    assert drawn[:10] != drawn[10:]  # a new permutation per epoch


def test_deterministic_and_resumable_at_any_iteration():
    make = lambda start=0: MultiDatasetSampler([13, 40], [1, 2], [2, 1], seed=7, block=16,  # noqa: E731
                                               start_iteration=start)
    full = _plans(make(), 100)
    assert full == _plans(make(), 100)
    for start in (0, 1, 15, 16, 17, 63):
        assert _plans(make(start), 100 - start) == full[start:]
    resumed = make()
    resumed.load_state_dict({"iteration": 37, "sizes": [13, 40]})
    assert _plans(resumed, 10) == full[37:47]
    with pytest.raises(ValueError, match="data changed"):
        make().load_state_dict({"iteration": 3, "sizes": [12, 40]})
    other_seed = MultiDatasetSampler([13, 40], [1, 2], [2, 1], seed=8, block=16)
    assert _plans(other_seed, 100) != full


def test_ranks_draw_their_own_batches_and_split_an_epoch():
    ranks = [MultiDatasetSampler([100], [1.0], [1], seed=0, rank=r, world_size=4) for r in range(4)]
    per_rank = [[p.indices[0] for p in _plans(s, 25)] for s in ranks]
    everything = [i for r in per_rank for i in r]
    assert sorted(everything) == list(range(100))  # one epoch split over the 4 ranks, no overlap
    seeds = {s.next().seed for s in ranks}
    assert len(seeds) == 4  # different augmentations per rank
    mixed = [MultiDatasetSampler([10, 10], [1, 1], [1, 1], seed=0, rank=r, world_size=2) for r in range(2)]
    choices = [[p.dataset for p in _plans(s, 50)] for s in mixed]
    assert choices[0] != choices[1]  # ranks may train different tasks in one iteration


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one sample"):
        MultiDatasetSampler([0, 4], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="ratios"):
        MultiDatasetSampler([3], [0.0], [1])
    with pytest.raises(ValueError, match="rank"):
        MultiDatasetSampler([3], [1.0], [1], rank=2, world_size=2)
