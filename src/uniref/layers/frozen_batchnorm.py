"""Batch normalisation with fixed statistics and affine terms (detectron2's ``FrozenBatchNorm2d``).

All four tensors are buffers, not parameters, so optimisers never see them and official checkpoints
(which store them as buffers) load one to one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrozenBatchNorm2d(nn.Module):
    """``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` with frozen buffers.

    Args:
        num_features: channel count ``C``.
        eps: added to the variance (detectron2 uses 1e-5).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        # ones - eps makes a freshly built layer an exact identity
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``."""
        if x.requires_grad:
            # The fused batch_norm backward would also compute (unused) weight/bias gradients;
            # an explicit affine map keeps the graph small.
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + shift.reshape(1, -1, 1, 1).to(x.dtype)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, local_metadata: dict, strict: bool,
        missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
    ) -> None:
        # Checkpoints converted from a regular BatchNorm2d carry this counter; it has no meaning here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"
