"""Shared helpers of the training tests: a tiny vocabulary, tiny stage configs, synthetic batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uniref.training.samples import build_sample_builder, collate
from uniref.training.stages import StageConfig, apply_overrides, get_stage
from uniref.training.synthetic import synthetic_entries
from uniref.training.transforms import AugmentConfig

WORDS = ["the", "red", "green", "blue", "yellow", "square", "circle", "left", "right", "first", "dog"]
TASKS = ("ris", "fss", "vos", "rvos")


def write_vocab(folder: Path) -> Path:
    """A WordPiece vocabulary with the special tokens and the synthetic words (a small embedding table)."""
    path = Path(folder) / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    return path


def vocab_size() -> int:
    return 5 + len(WORDS)


def model_overrides(vocab: Path, *, deterministic: bool = True) -> list[str]:
    """Tiny model, 10 queries, the test vocabulary; without dropout when ``deterministic``."""
    out = ["model=tiny", "model.num_queries=10", f"model.text.vocab_file={vocab}", f"model.text.vocab_size={vocab_size()}"]
    if deterministic:
        out += ["model.fusion_dropout=0.0", "model.text.hidden_dropout_prob=0.0",
                "model.text.attention_probs_dropout_prob=0.0"]
    return out


def tiny_stage(vocab: Path, tasks=TASKS, *, num: int = 2, batch_size: int = 1, extra: list[str] | None = None,
               size: int = 64) -> StageConfig:
    """The synthetic stage restricted to ``tasks``: fixed-size images, no crop, CPU, no workers."""
    stage = get_stage("synthetic")
    stage.datasets = [d for d in stage.datasets if d.task in tasks]
    overrides = model_overrides(vocab) + ["num_workers=0", "device=cpu", "log_period=1"]
    for d in stage.datasets:
        overrides += [f"datasets.{d.name}.options.num={num}", f"datasets.{d.name}.options.size={size}",
                      f"datasets.{d.name}.batch_size={batch_size}", f"datasets.{d.name}.augment.short_sizes={size}",
                      f"datasets.{d.name}.augment.max_size={size}"]
    return apply_overrides(stage, overrides + list(extra or []))


def synthetic_batch(task: str, tokenizer, *, num: int = 2, size: int = 64, seed: int = 0):
    """A collated batch of ``num`` generated samples of ``task`` (no augmentation)."""
    entries = synthetic_entries(task, num, size=size, seed=seed)
    augment = AugmentConfig(short_sizes=(size,), max_size=size, flip_prob=0.0, crop_prob=0.0)
    builder = build_sample_builder(task, entries, augment)
    samples = [builder(i, np.random.default_rng([seed, i])) for i in range(num)]
    return collate(samples, dataset=f"synthetic-{task}", task=task, tokenizer=tokenizer, use_mask_reference=True)


def ddp_stage(vocab: Path, steps: int) -> StageConfig:
    """RVOS (language and mask references) with one sample per process, the global loss normaliser and the
    mask encoder's BatchNorm in eval mode (batch statistics would differ between 2 x 1 and 1 x 2 samples)."""
    return tiny_stage(vocab, ("rvos",), num=4, batch_size=1,
                      extra=[f"max_iter={steps}", "loss_normalizer=global", "bn_eval=true", "mask_aux_loss=true",
                             "checkpoint_period=1000", "optim.base_lr=1e-4"])
