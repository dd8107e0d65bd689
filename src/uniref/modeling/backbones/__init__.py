"""Visual backbones: detectron2-layout ResNet and the detection Swin Transformer.

Every backbone is an ``nn.Module`` whose ``forward([B, 3, H, W])`` returns ``{"res2": ..., "res5": ...}``
and that exposes ``out_channels`` and ``strides`` (dicts keyed by the same names). The module's own
state-dict names are the official ones below ``detr.detr.backbone.0.backbone.``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from uniref.modeling.backbones.resnet import ResNet, ResNetConfig
from uniref.modeling.backbones.swin import SWIN_PRESETS, SwinConfig, SwinTransformer

__all__ = [
    "Backbone",
    "ResNet",
    "ResNetConfig",
    "SwinConfig",
    "SwinTransformer",
    "available_backbones",
    "build_backbone",
]


@runtime_checkable
class Backbone(Protocol):
    """What the rest of the model relies on: named multi-scale features with known channels and strides."""

    out_channels: dict[str, int]
    strides: dict[str, int]

    def __call__(self, x: Tensor) -> dict[str, Tensor]: ...


_RESNET_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
_SWIN_NAMES = {f"swin_{k}": k for k in SWIN_PRESETS}


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return sorted(_RESNET_DEPTHS) + sorted(_SWIN_NAMES)


def build_backbone(name: str, *, width: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a backbone by name; keyword arguments override the preset.

    ``resnet18/34/50/101`` -> :class:`ResNet` (detectron2 layout, FrozenBN, ``freeze_at=2``);
    ``swin_tiny/small/base/large`` -> :class:`SwinTransformer` (``swin_large`` is UniRef++'s Swin-L).
    Example: ``build_backbone("swin_large", embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8])``.

    Args:
        width: base width, None for the preset's. ResNet: stem and ``res2`` channels (bottleneck width for
            depth 50/101, whose ``res2`` is 4x wider), e.g. ``resnet18`` at ``width=32`` halves every stage
            (32, 64, 128, 256); Swin: ``embed_dim``. Explicit keyword arguments win over it.
    """
    if name in _RESNET_DEPTHS:
        depth = _RESNET_DEPTHS[name]
        if width is not None:
            basic = depth in (18, 34)
            derived = {"stem_out_channels": width, "res2_out_channels": width if basic else 4 * width,
                       "width_per_group": width}
            kwargs = {**derived, **kwargs}
        return ResNet(depth, **kwargs)
    if name in _SWIN_NAMES:
        cfg = SWIN_PRESETS[_SWIN_NAMES[name]]
        arch = {
            "embed_dim": cfg.embed_dim, "depths": list(cfg.depths), "num_heads": list(cfg.num_heads),
            "window_size": cfg.window_size, "mlp_ratio": cfg.mlp_ratio, "qkv_bias": cfg.qkv_bias,
            "drop_path_rate": cfg.drop_path_rate, "patch_size": cfg.patch_size, "patch_norm": cfg.patch_norm,
        }
        if width is not None:
            arch["embed_dim"] = width
        arch.update(kwargs)
        embed_dim, depths, num_heads = arch.pop("embed_dim"), arch.pop("depths"), arch.pop("num_heads")
        return SwinTransformer(embed_dim, depths, num_heads, **arch)
    raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(available_backbones())}")
