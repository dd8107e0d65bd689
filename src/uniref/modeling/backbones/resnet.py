"""ResNet in detectron2's layout (``stem``, ``res2``..``res5``), as UniRef++ uses it.

Differences from torchvision that matter for checkpoints and numerics:
- every conv is bias-free and owns its norm as a child named ``norm`` (``res3.0.conv1.norm.*``);
- norms are :class:`FrozenBatchNorm2d` (statistics and affine terms are buffers) for the official models;
  ``norm="GN"`` gives trainable GroupNorm instead, for backbones trained from scratch (nothing to freeze);
- the stride of a bottleneck sits on the 3x3 conv (``STRIDE_IN_1X1=False``);
- ``freeze_at=2`` freezes the stem and ``res2`` (``requires_grad=False``).

Naming: ``B`` batch, ``C`` channels, feature ``resK`` has stride ``2**K``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from uniref.layers.frozen_batchnorm import FrozenBatchNorm2d


NORMS = ("FrozenBN", "GN")


def _make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "GN":
        # 8 channels per group up to detectron2's 32 groups, so that narrow stages still normalise groups
        return nn.GroupNorm(max(1, min(32, channels // 8)), channels)
    raise ValueError(f"unknown ResNet norm {kind!r}; choose one of {', '.join(NORMS)}")


class ConvNorm(nn.Conv2d):
    """Bias-free conv followed by its own norm (detectron2 ``Conv2d(..., norm=...)`` naming)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, norm: str = "FrozenBN"):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)
        self.norm = _make_norm(norm, out_channels)
        # detectron2 c2_msra_fill: He-normal, fan_out
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class BasicStem(nn.Module):
    """7x7 stride-2 conv + norm + ReLU, then 3x3 stride-2 max-pool (output stride 4)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, *, norm: str = "FrozenBN"):
        super().__init__()
        self.conv1 = ConvNorm(in_channels, out_channels, 7, stride=2, padding=3, norm=norm)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, C, ceil(H/4), ceil(W/4)]``."""
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34); a 1x1 projection shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "FrozenBN"):
        super().__init__()
        # registered first, as in detectron2, so the state-dict order matches too
        self.shortcut = (
            ConvNorm(in_channels, out_channels, 1, stride=stride, norm=norm) if in_channels != out_channels else None
        )
        self.conv1 = ConvNorm(in_channels, out_channels, 3, stride=stride, padding=1, norm=norm)
        self.conv2 = ConvNorm(out_channels, out_channels, 3, padding=1, norm=norm)
        _zero_last_norm(self.conv2.norm)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return F.relu_(out)


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3 (strided unless ``stride_in_1x1``), 1x1 expand, plus residual (ResNet-50/101)."""

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int = 1,
                 num_groups: int = 1, stride_in_1x1: bool = False, dilation: int = 1, norm: str = "FrozenBN"):
        super().__init__()
        self.shortcut = (
            ConvNorm(in_channels, out_channels, 1, stride=stride, norm=norm) if in_channels != out_channels else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, 1, stride=stride_1x1, norm=norm)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3,
                              padding=dilation, dilation=dilation, groups=num_groups, norm=norm)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1, norm=norm)
        _zero_last_norm(self.conv3.norm)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return F.relu_(out)


def _zero_last_norm(norm: nn.Module) -> None:
    """A trainable norm closing a residual branch starts at zero, so that every block starts as the identity
    and a network trained from scratch keeps its activations' scale (Goyal et al., 2017). Frozen norms keep
    their identity statistics: their values come from a checkpoint."""
    if isinstance(norm, nn.GroupNorm):
        nn.init.zeros_(norm.weight)


BLOCKS_PER_DEPTH: dict[int, list[int]] = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


@dataclass
class ResNetConfig:
    """detectron2 ``MODEL.RESNETS`` fields that change the architecture.

    ``res2_out_channels`` is 64 for depth 18/34 (BasicBlock) and 256 for the bottleneck depths in detectron2;
    other values give narrower or wider networks (each later stage doubles it).
    """

    depth: int = 50
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    num_groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = False
    res5_dilation: int = 1
    freeze_at: int = 2
    out_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")
    norm: str = "FrozenBN"


class ResNet(nn.Module):
    """detectron2 ResNet trunk returning ``{"res2": [B, C2, H/4, W/4], ..., "res5": [B, C5, H/32, W/32]}``.

    Attributes:
        out_channels: channels of every returned feature.
        strides: stride of every returned feature.
    """

    def __init__(self, depth: int = 50, *, stem_out_channels: int = 64, res2_out_channels: int | None = None,
                 num_groups: int = 1, width_per_group: int = 64, stride_in_1x1: bool = False,
                 res5_dilation: int = 1, freeze_at: int = 2,
                 out_features: tuple[str, ...] = ("res2", "res3", "res4", "res5"), norm: str = "FrozenBN"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown ResNet norm {norm!r}; choose one of {', '.join(NORMS)}")
        if depth not in BLOCKS_PER_DEPTH:
            raise ValueError(f"ResNet depth {depth} is not supported; choose one of {sorted(BLOCKS_PER_DEPTH)}")
        basic = depth in (18, 34)
        if res2_out_channels is None:
            res2_out_channels = 64 if basic else 256
        # detectron2 also pins res2 of ResNet-18/34 to 64 channels; narrower (or wider) ones are allowed here
        # for small configs (every later stage doubles it).
        if basic and (num_groups != 1 or res5_dilation != 1):
            raise ValueError("ResNet-18/34 need num_groups=1 and res5_dilation=1")
        if res5_dilation not in (1, 2):
            raise ValueError("res5_dilation must be 1 or 2")

        self.stem = BasicStem(3, stem_out_channels, norm=norm)
        in_channels = stem_out_channels
        out_channels = res2_out_channels
        bottleneck_channels = num_groups * width_per_group
        self.stage_names: list[str] = []
        self.out_channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        stride_so_far = 4
        for idx, num_blocks in enumerate(BLOCKS_PER_DEPTH[depth]):
            name = f"res{idx + 2}"
            dilation = res5_dilation if idx == 3 else 1
            first_stride = 1 if idx == 0 or dilation == 2 else 2
            blocks: list[nn.Module] = []
            for b in range(num_blocks):
                stride = first_stride if b == 0 else 1
                if basic:
                    blocks.append(BasicBlock(in_channels, out_channels, stride=stride, norm=norm))
                else:
                    blocks.append(BottleneckBlock(
                        in_channels, out_channels, bottleneck_channels=bottleneck_channels, stride=stride,
                        num_groups=num_groups, stride_in_1x1=stride_in_1x1, dilation=dilation, norm=norm,
                    ))
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            stride_so_far *= first_stride
            self.out_channels[name] = out_channels
            self.strides[name] = stride_so_far
            out_channels *= 2
            bottleneck_channels *= 2

        unknown = set(out_features) - set(self.stage_names)
        if not out_features or unknown:
            raise ValueError(f"ResNet output features must be a non-empty subset of {self.stage_names}, "
                             f"got {list(out_features)}")
        self.out_features = tuple(out_features)
        self.out_channels = {k: v for k, v in self.out_channels.items() if k in self.out_features}
        self.strides = {k: v for k, v in self.strides.items() if k in self.out_features}
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg: ResNetConfig) -> "ResNet":
        return cls(cfg.depth, stem_out_channels=cfg.stem_out_channels, res2_out_channels=cfg.res2_out_channels,
                   num_groups=cfg.num_groups, width_per_group=cfg.width_per_group,
                   stride_in_1x1=cfg.stride_in_1x1, res5_dilation=cfg.res5_dilation,
                   freeze_at=cfg.freeze_at, out_features=cfg.out_features, norm=cfg.norm)

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """Stop gradients for the stem (``freeze_at >= 1``) and stages ``res2..res{freeze_at}``."""
        if freeze_at >= 1:
            _freeze(self.stem)
        for idx, name in enumerate(self.stage_names, start=2):
            if freeze_at >= idx:
                _freeze(getattr(self, name))
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``[B, 3, H, W]`` normalised image -> ``{name: [B, C, H/stride, W/stride]}`` (ceil division)."""
        if x.dim() != 4:
            raise ValueError(f"ResNet takes a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
        x = self.stem(x)
        outputs: dict[str, Tensor] = {}
        last = max(self.stage_names.index(n) for n in self.out_features)
        for i, name in enumerate(self.stage_names):
            if i > last:
                break
            x = getattr(self, name)(x)
            if name in self.out_features:
                outputs[name] = x
        return outputs
