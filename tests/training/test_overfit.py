"""Overfitting two generated samples lowers the total loss at least tenfold, for each task.

Two 64-pixel samples per task, no augmentation, videos of two frames with one object (so every clip is the
same), lr 1e-3 (text encoder included), the official clipping and loss terms. The ratio compares the mean
loss of the first five iterations with the mean of the last five.
"""

from __future__ import annotations

import json

import pytest

from training_fixtures import tiny_stage, write_vocab
from uniref.training.engine import Trainer

STEPS = {"ris": 100, "fss": 100, "vos": 100, "rvos": 100}


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~1 min per task on two idle cores; far more on a shared machine
@pytest.mark.parametrize("task", ["ris", "fss", "vos", "rvos"])
def test_overfitting_lowers_the_loss_tenfold(task, tmp_path):
    vocab = write_vocab(tmp_path)
    name = f"synthetic-{task}"
    stage = tiny_stage(vocab, (task,), num=2, batch_size=2, extra=[
        f"max_iter={STEPS[task]}", f"checkpoint_period={STEPS[task]}", "optim.base_lr=1e-3",
        "optim.text_encoder_lr=1e-3", f"datasets.{name}.augment.flip_prob=0", f"datasets.{name}.options.num_frames=2",
        f"datasets.{name}.options.max_objects=1", f"mask_aux_loss={task in ('vos', 'rvos')}",
    ])
    Trainer(stage, tmp_path / "run", progress=False).train()
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS[task]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"{task}: loss {first:.3f} -> {last:.3f}, ratio {first / last:.1f}")
    assert first / last >= 10, (first, last)
