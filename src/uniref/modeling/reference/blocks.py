"""Building blocks of the mask reference encoder (STCN-style): a biased ResNet-18 trunk, pre-activation
residual blocks, CBAM attention and the feature-fusion block.

State-dict names equal the official ones (``conv1``, ``bn1``, ``layer{i}.{j}.{conv1,bn1,conv2,bn2,downsample}``,
``block1``, ``attention.ChannelGate.mlp``, ``attention.SpatialGate.spatial.conv``, ``block2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """ResNet basic block whose convolutions carry a bias (the official trunk keeps nn.Conv2d's default)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W]`` -> ``[B, channels, H/stride, W/stride]``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _make_stage(in_channels: int, channels: int, stride: int, blocks: int = 2) -> nn.Sequential:
    layers = [BasicBlock(in_channels, channels, stride)]
    layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet18Trunk(nn.Module):
    """ResNet-18 over an image plus one mask channel (4 input channels), up to ``num_stages`` stages.

    Registers ``conv1``, ``bn1`` and ``layer1`` .. ``layer{num_stages}`` directly on the module, so that
    encoders subclassing it get the official top-level names. Stage ``i`` has stride ``2 ** (i + 1)``
    and ``widths[i - 1]`` channels (official: 64, 128, 256, 512); the stem has ``widths[0]``.

    Never loads pretrained weights (the official encoder downloads ImageNet weights when built; that
    is left to checkpoint loading). The init follows the official one otherwise: convolution weights
    ``N(0, sqrt(2 / (k * k * out_channels)))``, biases zero, BatchNorm weight one and bias zero.
    """

    def __init__(self, num_stages: int = 4, in_channels: int = 4,
                 widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        if not 1 <= num_stages <= 4:
            raise ValueError(f"a ResNet-18 trunk has 1 to 4 stages, got {num_stages}")
        if len(widths) != 4 or any(int(w) < 1 for w in widths):
            raise ValueError(f"a ResNet-18 trunk needs 4 positive stage widths, got {tuple(widths)}")
        self.num_stages = num_stages
        self.stage_channels = tuple(int(w) for w in widths)
        self.conv1 = nn.Conv2d(in_channels, self.stage_channels[0], 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(self.stage_channels[0])
        prev = self.stage_channels[0]
        for i in range(num_stages):
            ch = self.stage_channels[i]
            self.add_module(f"layer{i + 1}", _make_stage(prev, ch, stride=1 if i == 0 else 2))
            prev = ch
        self._init_trunk()

    def _init_trunk(self) -> None:
        modules = [self.conv1, self.bn1] + [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]
        for top in modules:
            for m in top.modules():
                if isinstance(m, nn.Conv2d):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward_trunk(self, image: Tensor, mask: Tensor) -> list[Tensor]:
        """Run the trunk on ``[image, mask]``.

        Args:
            image: ``[B, 3, H, W]`` normalised, zero-padded image.
            mask: ``[B, 1, H, W]`` object mask (0/1; bool or any numeric dtype).

        Returns:
            the output of each stage, ``layer1`` (stride 4) .. ``layer{num_stages}``.
        """
        x = torch.cat([image, mask.to(image.dtype)], dim=1)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        feats = []
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        return feats


class ResBlock(nn.Module):
    """Pre-activation residual block ``x' = skip(x) + conv2(relu(conv1(relu(x))))``.

    The skip is a 3x3 convolution (``downsample``) when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        # Registered first so the state-dict order matches the official one.
        self.downsample = nn.Conv2d(in_channels, out_channels, 3, padding=1) if in_channels != out_channels else None
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W]`` -> ``[B, out, H, W]``."""
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = x if self.downsample is None else self.downsample(x)
        return skip + r


class ChannelGate(nn.Module):
    """CBAM channel attention: a shared MLP over the average- and max-pooled descriptors, sigmoid, scale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        # Index layout (0 flatten, 1 linear, 2 relu, 3 linear) gives the official names mlp.1 / mlp.3.
        hidden = max(1, channels // reduction)  # the floor only matters below 16 channels
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> same shape, rescaled per channel."""
        size = x.shape[-2:]
        # A full-size pooling window (not adaptive pooling) keeps the official summation order.
        avg = self.mlp(F.avg_pool2d(x, size, stride=size))
        mx = self.mlp(F.max_pool2d(x, size, stride=size))
        return x * torch.sigmoid(avg + mx)[:, :, None, None]


class _SpatialConv(nn.Module):
    """Holds the 7x7 convolution under the official name ``spatial.conv``."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention: channel-wise [max, mean] -> 7x7 conv -> sigmoid -> scale."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.spatial = _SpatialConv(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> same shape, rescaled per position."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Channel gate followed by spatial gate (returns the gated features, not a residual)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate()

    def forward(self, x: Tensor) -> Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuse a mask-encoder feature with the reference image's projected feature of the same stride.

    ``cat([x, ref]) -> ResBlock(in, out) -> x + CBAM(x) -> ResBlock(out, out)``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block1 = ResBlock(in_channels, out_channels)
        self.attention = CBAM(out_channels)
        self.block2 = ResBlock(out_channels, out_channels)

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        """``x`` ``[B, Cx, h, w]`` and ``ref`` ``[B, Cr, h, w]`` (``Cx + Cr = in_channels``) -> ``[B, out, h, w]``."""
        x = self.block1(torch.cat([x, ref], dim=1))
        x = x + self.attention(x)
        return self.block2(x)
