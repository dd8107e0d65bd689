"""One function builds every named model: the UniRef++ configs and the UniRef-SAM family."""

from __future__ import annotations

import os

import torch

from uniref.checkpoint import config_from_checkpoint, load_checkpoint
from uniref.configs import SAM_CONFIG_NAMES, ModelConfig, get_config


def _is_sam(name) -> bool:
    """Whether ``name`` (a config name or object) belongs to the UniRef-SAM family, without importing it."""
    if isinstance(name, str):
        return name in SAM_CONFIG_NAMES
    return type(name).__name__ == "UniRefSamConfig"


def build_model(
    name="r50",
    *,
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    sam_weights: str | os.PathLike | None = None,
    text_weights: str | os.PathLike | None = None,
    **overrides,
):
    """Build a named config with optional overrides and weights.

    Args:
        name: a config name (``r50``, ``swinl``, ``tiny``, ``sam_vit_b``, ``sam_vit_l``, ``sam_vit_h``, ...),
            a :class:`ModelConfig` or a :class:`~uniref.modeling.sam.UniRefSamConfig`.
        weights: an official ``.pth`` or one of our ``.safetensors``; loaded strictly. For the ``sam_*``
            configs: an official UniRef-SAM state dict (or one of ours).
        device: where the model lives (CPU when None). Nothing is ever downloaded.
        dtype: parameter dtype (float32 when None).
        sam_weights: ``sam_*`` only, used when ``weights`` is None: Meta's plain SAM checkpoint of the same
            size (``sam_vit_b_01ec64.pth`` ...); the mask encoder and UniFusion keep their initialisation.
        text_weights: ``sam_*`` only, with ``sam_weights``: a UniRef++ checkpoint whose text encoder and
            resizer are loaded.
        overrides: config fields to change, e.g. ``num_queries=100`` or ``text={"num_hidden_layers": 2}``.

    Returns:
        a :class:`~uniref.modeling.uniref.UniRef` or a :class:`~uniref.modeling.sam.UniRefSAM`, in eval mode.
    """
    if _is_sam(name):
        from uniref.modeling.sam import build_sam_model

        return build_sam_model(
            name, weights=weights, sam_weights=sam_weights, text_weights=text_weights, device=device, dtype=dtype,
            **overrides,
        )
    if sam_weights is not None or text_weights is not None:
        raise ValueError(
            f"sam_weights / text_weights only apply to the UniRef-SAM configs ({', '.join(SAM_CONFIG_NAMES)}); "
            f"got config {getattr(name, 'name', name)!r}"
        )
    from uniref.modeling.uniref import UniRef

    config = name.replace(**overrides) if isinstance(name, ModelConfig) else get_config(name, **overrides)
    model = UniRef(config)
    if weights is not None:
        load_checkpoint(model, weights, strict=True)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def build_model_from_checkpoint(path: str | os.PathLike, **kwargs):
    """Build the model whose config is stored in one of our ``.safetensors`` files and load it."""
    stored = config_from_checkpoint(path)
    if stored is None:
        raise ValueError(f"{path} stores no config; call build_model(<config name>, weights=...) instead")
    if "encoder" in stored and "img_size" in stored:  # a UniRefSamConfig (ModelConfig has neither field)
        from uniref.modeling.sam import UniRefSamConfig

        return build_model(UniRefSamConfig.from_dict(stored), weights=path, **kwargs)
    return build_model(ModelConfig.from_dict(stored), weights=path, **kwargs)
