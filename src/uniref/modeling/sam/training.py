"""What UniRef-SAM trains (spec section 12) and the paper's two stage recipes.

SAM stays frozen except every parameter whose name contains ``mask_decoder``; the text encoder
(frozen in the video stage), the resizer, the mask reference encoder and UniFusion are trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

Stage = Literal["image", "video"]


@dataclass
class SamStageConfig:
    """One official UniRef-SAM training stage (``projects/UniRef/configs/sam/*.yaml``).

    Attributes:
        name: the official config file.
        datasets: ``(dataset, task, sampling ratio)``; the ratios are relative weights.
        base_lr: AdamW learning rate; the text encoder keeps its absolute ``lr_text_encoder``.
        max_iter, steps: iterations and the LR drop points (x0.1).
        freeze_text_encoder: the video stage freezes BERT.
        weights: MODEL.WEIGHTS of the official config ("" = start from SAM + fresh parts).
    """

    name: str
    stage: Stage
    datasets: list[tuple[str, str, float]]
    base_lr: float
    max_iter: int
    steps: tuple[int, ...]
    freeze_text_encoder: bool
    lr_text_encoder: float = 1e-5
    weight_decay: float = 0.05
    clip_grad_norm: float = 0.1
    weights: str = ""
    loss_weights: dict[str, float] = field(default_factory=lambda: {"loss_mask": 2.0, "loss_dice": 0.5})


def sam_image_stage() -> SamStageConfig:
    """``sam/sam_image_joint_rec_fss_8gpu.yaml``: RefCOCO-mixed + FSS-1000, 1 : 0.05."""
    return SamStageConfig(
        name="sam/sam_image_joint_rec_fss_8gpu.yaml",
        stage="image",
        datasets=[("refcoco-mixed", "grounding", 1.0), ("fss-1000-train", "fss", 0.05)],
        base_lr=2e-4,
        max_iter=90_000,
        steps=(75_000,),
        freeze_text_encoder=False,
    )


def sam_video_stage() -> SamStageConfig:
    """``sam/sam_video_joint_vos_rvos_8gpu.yaml``: the datasets of the UniRef++ video stage."""
    return SamStageConfig(
        name="sam/sam_video_joint_vos_rvos_8gpu.yaml",
        stage="video",
        datasets=[
            ("video-coco_2017_train", "vos", 0.8),
            ("ytbvos19-train", "vos", 0.6),
            ("vos-lvos-train", "vos", 0.4),
            ("ovis-train", "vos", 0.2),
            ("video-refcoco-mixed", "rvos", 1.0),
            ("refytvos-train", "rvos", 1.0),
        ],
        base_lr=1e-4,
        max_iter=90_000,
        # spec section 12 gives this stage no step; the 75k step of the image stage and of the UniRef++ video
        # stage (same LR, same length) is our assumption
        steps=(75_000,),
        freeze_text_encoder=True,
    )


# Official dataset names of the SAM configs -> the dataset names of the training engine's UniRef++ stages
# (``image_ris_fss`` and ``video_vos_rvos`` in ``uniref.training.stages``), which read the same data.
ENGINE_DATASET_NAMES: dict[str, str] = {
    "refcoco-mixed": "refcoco-mixed",
    "fss-1000-train": "fss1000",
    "video-coco_2017_train": "video-coco",
    "ytbvos19-train": "ytbvos19",
    "vos-lvos-train": "lvos",
    "ovis-train": "ovis",
    "video-refcoco-mixed": "video-refcoco-mixed",
    "refytvos-train": "refytvos",
}
# The engine stage whose dataset definitions (readers, roots, augmentation) a SAM stage reuses.
ENGINE_BASE_STAGES: dict[str, str] = {"image": "image_ris_fss", "video": "video_vos_rvos"}


def engine_stage_fields(stage: SamStageConfig, model: str = "sam_vit_h") -> dict:
    """The fields a training-engine stage needs to run ``stage`` (plain data, no engine import).

    Returns:
        ``{"name", "model", "base_stage", "datasets": {engine dataset name: ratio}, "max_iter",
        "freeze_text_encoder", "optim": {"base_lr", "steps", "text_encoder_lr", "weight_decay",
        "clip_norm"}}``. ``base_stage`` is the engine stage whose dataset entries to keep (only those
        named in ``datasets``, with these ratios).
    """
    return {
        "name": f"sam_{stage.stage}",
        "model": model,
        "base_stage": ENGINE_BASE_STAGES[stage.stage],
        "datasets": {ENGINE_DATASET_NAMES[name]: ratio for name, _, ratio in stage.datasets},
        "max_iter": stage.max_iter,
        "freeze_text_encoder": stage.freeze_text_encoder,
        "optim": {
            "base_lr": stage.base_lr,
            "steps": tuple(stage.steps),
            "text_encoder_lr": stage.lr_text_encoder,
            "weight_decay": stage.weight_decay,
            "clip_norm": stage.clip_grad_norm,
        },
    }


def is_trainable_name(name: str, stage: Stage) -> bool:
    """Whether parameter ``name`` (our names, e.g. ``sam.mask_decoder.…``) trains in ``stage``."""
    if name.startswith("sam."):
        return "mask_decoder" in name
    if name.startswith("text_encoder."):
        return stage != "video"
    return True


def freeze_for_training(model: nn.Module, stage: Stage = "image") -> None:
    """Set ``requires_grad`` for a UniRef-SAM training stage (``"image"`` or ``"video"``).

    Frozen modules are not switched to eval mode: SAM's encoder has no dropout or batch norm, and the
    official video stage keeps the frozen BERT in train mode (its dropout stays active).
    """
    if stage not in ("image", "video"):
        raise ValueError(f"stage must be 'image' or 'video', not {stage!r}")
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable_name(name, stage))


def parameter_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Per top-level part: ``(trainable, total)`` parameter elements (works on the meta device)."""
    counts: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        part = name.split(".", 1)[0]
        if part == "sam":
            part = "sam." + name.split(".")[1]
        c = counts.setdefault(part, [0, 0])
        c[1] += p.numel()
        if p.requires_grad:
            c[0] += p.numel()
    return {k: (v[0], v[1]) for k, v in counts.items()}


def trainable_parameter_report(model: nn.Module) -> str:
    """A table of trainable / frozen / total parameters per part, with totals."""
    counts = parameter_counts(model)
    width = max(len(k) for k in counts) if counts else 5
    lines = [f"{'part':<{width}}  {'trainable':>13}  {'frozen':>13}  {'total':>13}"]
    tt = ta = 0
    for part, (t, a) in counts.items():
        lines.append(f"{part:<{width}}  {t:>13,}  {a - t:>13,}  {a:>13,}")
        tt, ta = tt + t, ta + a
    lines.append(f"{'total':<{width}}  {tt:>13,}  {ta - tt:>13,}  {ta:>13,}")
    pct = 100.0 * tt / ta if ta else 0.0
    lines.append(f"trainable: {tt:,} of {ta:,} parameters ({pct:.2f}%)")
    return "\n".join(lines)
