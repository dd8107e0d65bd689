"""The plain multi-layer perceptron used by the box head and the dynamic-mask controller."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them; state-dict names ``layers.{i}``.

    Args:
        input_dim, hidden_dim, output_dim: widths of the first input, the hidden layers and the output.
        num_layers: number of Linear layers.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        """``[..., input_dim]`` -> ``[..., output_dim]``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x
