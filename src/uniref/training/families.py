"""The model families the training engine trains: UniRef++ (spec section 10) and UniRef-SAM (spec section 12).

The :class:`~uniref.training.engine.Trainer` is family-agnostic: :func:`model_family` picks, from the stage's model
config, how to build the network, what stays frozen, how the run starts from files, and which module computes
the loss of a :class:`~uniref.training.samples.TrainBatch`.

================  ==============================================  ===============================================
                  UniRef++ (``ModelConfig``)                      UniRef-SAM (``UniRefSamConfig``)
================  ==============================================  ===============================================
network           ``UniRef``                                      ``UniRefSAM``
frozen            backbone stem/res2 (set by the backbone), BERT  all of ``sam`` except names with
                  pooler, BERT when the stage freezes it          ``mask_decoder``; BERT when the stage freezes it
loss module       ``TrainingModel`` (simOTA matching, set         ``SamTrainingModel`` (one mask per sample,
                  criterion)                                      2 x BCE + 0.5 x dice)
``init_weights``  an official ``.pth`` or ours, strict/partial    Meta's plain SAM ``.pth`` (plus
                                                                  ``init_text_weights``), or a UniRef-SAM
                                                                  checkpoint, strict/partial
================  ==============================================  ===============================================

Both share the optimiser (:func:`uniref.training.optim.build_optimizer`: no UniRef-SAM parameter is named like a
visual backbone or a deformable projection, so only ``text_encoder.*`` gets its own absolute rate), the schedule,
clipping, checkpoints and :func:`~uniref.training.step.set_train_mode` (a frozen BERT runs in eval mode).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torch import nn

from uniref.checkpoint import CheckpointError, LoadReport
from uniref.configs import ModelConfig
from uniref.training.step import (
    TrainingModel,
    apply_freezing,
    checkpoint_text_encoder,
    enable_gradient_checkpointing,
)

if TYPE_CHECKING:
    from uniref.training.stages import StageConfig

__all__ = ["ModelFamily", "UniRefFamily", "SamFamily", "is_sam_config", "load_sam_initial_weights", "model_family"]


class ModelFamily(Protocol):
    """How the engine trains one kind of network."""

    name: str

    def build(self, config) -> nn.Module:
        """A randomly initialised network for ``config``."""

    def freeze(self, model: nn.Module, *, text_frozen: bool) -> None:
        """``requires_grad=False`` on what the stage does not train."""

    def load_initial_weights(self, model: nn.Module, path: str | os.PathLike, mode: str, *,
                             text_weights: str = "") -> LoadReport:
        """Load ``StageConfig.init_weights`` (and ``init_text_weights``); raise when the file does not fit."""

    def training_module(self, model: nn.Module, stage: StageConfig, *, text_frozen: bool) -> nn.Module:
        """The module whose ``forward(batch)`` returns the loss (``loss``, ``terms``, ``num_matched``)."""

    def gradient_checkpointing(self, model: nn.Module) -> list[str]:
        """Recompute activations in the backward pass; the names of the wrapped modules."""

    def parameter_report(self, model: nn.Module) -> str | None:
        """A trainable / frozen parameter table printed when the run starts (None: none)."""


def is_sam_config(config) -> bool:
    """Whether a model config belongs to the UniRef-SAM family (imports it only when it might)."""
    if isinstance(config, ModelConfig):
        return False
    from uniref.modeling.sam.config import UniRefSamConfig

    return isinstance(config, UniRefSamConfig)


def model_family(config) -> ModelFamily:
    """The family that trains ``config`` (a ``ModelConfig`` or a ``UniRefSamConfig``)."""
    return SamFamily() if is_sam_config(config) else UniRefFamily()


class UniRefFamily:
    """UniRef++: matching-based set prediction (spec section 10)."""

    name = "uniref"

    def build(self, config: ModelConfig) -> nn.Module:
        from uniref.modeling.uniref import UniRef

        return UniRef(config)

    def freeze(self, model: nn.Module, *, text_frozen: bool) -> None:
        apply_freezing(model, freeze_text_encoder=text_frozen)

    def load_initial_weights(self, model: nn.Module, path: str | os.PathLike, mode: str, *,
                             text_weights: str = "") -> LoadReport:
        if text_weights:
            raise ValueError("init_text_weights applies to UniRef-SAM models only")
        # the engine's loader (imported here: the engine imports this module)
        from uniref.training.engine import load_initial_weights

        return load_initial_weights(model, path, mode)

    def training_module(self, model: nn.Module, stage: StageConfig, *, text_frozen: bool) -> nn.Module:
        from uniref.training.criterion import SetCriterion

        criterion = SetCriterion(mask_aux_loss=stage.mask_aux_loss)
        return TrainingModel(model, criterion, loss_normalizer=stage.loss_normalizer, frozen_text_encoder=text_frozen)

    def gradient_checkpointing(self, model: nn.Module) -> list[str]:
        return enable_gradient_checkpointing(model)

    def parameter_report(self, model: nn.Module) -> str | None:
        return None


class SamFamily:
    """UniRef-SAM: SAM frozen except its mask decoder, one mask per sample (spec section 12)."""

    name = "uniref-sam"

    def build(self, config) -> nn.Module:
        from uniref.modeling.sam import UniRefSAM

        return UniRefSAM(config)

    def freeze(self, model: nn.Module, *, text_frozen: bool) -> None:
        from uniref.modeling.sam import freeze_for_training

        # the two official rules differ only in BERT: "video" is "image" with the text encoder frozen too
        freeze_for_training(model, "video" if text_frozen else "image")

    def load_initial_weights(self, model: nn.Module, path: str | os.PathLike, mode: str, *,
                             text_weights: str = "") -> LoadReport:
        return load_sam_initial_weights(model, path, mode, text_weights=text_weights)

    def training_module(self, model: nn.Module, stage: StageConfig, *, text_frozen: bool) -> nn.Module:
        from uniref.modeling.sam import SamTrainingModel

        # no matching and no normaliser: the loss is a mean over the batch's pixels (StageConfig.validate
        # rejects the UniRef++-only loss options)
        return SamTrainingModel(model)

    def gradient_checkpointing(self, model: nn.Module) -> list[str]:
        # SAM's image encoder is frozen and runs without a graph; BERT is the only deep stack that keeps
        # activations for the backward pass
        return ["text_encoder"] if checkpoint_text_encoder(getattr(model, "text_encoder", None)) else []

    def parameter_report(self, model: nn.Module) -> str | None:
        from uniref.modeling.sam import trainable_parameter_report

        return trainable_parameter_report(model)


def load_sam_initial_weights(model: nn.Module, path: str | os.PathLike, mode: str, *,
                             text_weights: str = "") -> LoadReport:
    """The starting weights of a UniRef-SAM run.

    Args:
        model: a :class:`~uniref.modeling.sam.UniRefSAM`.
        path: Meta's plain SAM checkpoint of the same size (the official start, ``MODEL.WEIGHTS ""``: the mask
            encoder and UniFusion keep their initialisation), or a UniRef-SAM checkpoint (official names, ours, or
            one of our training checkpoints).
        mode: for a UniRef-SAM checkpoint, "strict" (every tensor must match) or "partial" (tensors the file
            lacks keep their initialisation; a shape that differs is an error). Meta's SAM weights always load
            strictly: they must all fit.
        text_weights: with a plain SAM checkpoint only, a UniRef++ checkpoint whose text encoder and resizer are
            loaded ("" = BERT from ``model.text.pretrained_dir``, or random).
    Returns:
        the load report (a :class:`~uniref.modeling.sam.SamLoadReport` naming the parts left at initialisation
        for a plain SAM start).
    """
    from uniref.modeling.sam.checkpoint import (
        is_plain_sam_state_dict,
        load_sam_weights,
        load_uniref_sam_checkpoint,
        read_any_state_dict,
    )

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_weights not found: {path}")
    plain = is_plain_sam_state_dict(read_any_state_dict(path))  # read again below, so errors name the file
    if plain:
        if text_weights and not Path(text_weights).is_file():
            raise FileNotFoundError(f"init_text_weights not found: {text_weights}")
        return load_sam_weights(model, path, uniref_checkpoint=text_weights or None, strict=True)
    if text_weights:
        raise ValueError(f"init_text_weights only applies when init_weights is Meta's plain SAM checkpoint; {path} "
                         "is a UniRef-SAM checkpoint, which has its own text encoder")
    report = load_uniref_sam_checkpoint(model, path, strict=(mode == "strict"))
    loaded = len(model.state_dict()) - len(report.missing) - len(report.mismatched)
    if mode == "partial" and (report.mismatched or loaded <= 0):
        raise CheckpointError(f"{path} was written for another model config ({len(report.mismatched)} tensors differ "
                              f"in shape, {max(loaded, 0)} fit):\n" + report.format(path))
    return report
