"""Class and box heads of the detector, one per decoder layer plus one for the encoder proposals.

Naming: ``B`` batch, ``Q`` queries, ``C`` channels, ``Ld`` decoder layers, ``K`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from uniref.layers.box_ops import inverse_sigmoid
from uniref.layers.mlp import MLP
from uniref.modeling.transformer.deformable_transformer import TransformerOutput


def build_detection_heads(
    d_model: int, num_classes: int, num_decoder_layers: int, two_stage: bool = True
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Independent heads per layer with the official init.

    Args:
        d_model: input width C.
        num_classes: K (1 for UniRef++, class-agnostic).
        num_decoder_layers: Ld.
        two_stage: add one more head pair (the last) for the encoder proposals.

    Returns:
        ``class_embed`` (Linear C -> K) and ``bbox_embed`` (MLP C -> C -> C -> 4, logit-space deltas), each with
        ``Ld + 1`` entries when ``two_stage`` else ``Ld``.
    """
    num_heads = num_decoder_layers + (1 if two_stage else 0)
    prior_prob = 0.01
    bias_value = -math.log((1 - prior_prob) / prior_prob)
    class_embed, bbox_embed = [], []
    for _ in range(num_heads):
        cls = nn.Linear(d_model, num_classes)
        # focal-loss prior: every query starts at probability 0.01
        nn.init.constant_(cls.bias, bias_value)
        box = MLP(d_model, d_model, 4, 3)
        # start exactly at the reference box
        nn.init.zeros_(box.layers[-1].weight)
        nn.init.zeros_(box.layers[-1].bias)
        class_embed.append(cls)
        bbox_embed.append(box)
    return nn.ModuleList(class_embed), nn.ModuleList(bbox_embed)


def predict_per_layer(
    out: TransformerOutput, class_embed: Sequence[nn.Module], bbox_embed: Sequence[nn.Module]
) -> tuple[Tensor, Tensor, Tensor]:
    """Class logits and refined boxes of every decoder layer (the official ``coco_forward`` glue).

    Layer i refines its own input reference: ``init_reference`` for layer 0, ``inter_references[i - 1]``
    otherwise. Under look-forward-twice that reference is still attached to the graph, so the box loss of
    layer i also reaches the box head of layer i - 1.

    Returns:
        logits ``[Ld, B, Q, K]``, boxes ``[Ld, B, Q, 4]`` (sigmoid cxcywh relative to the unpadded image), and
        the input reference of each layer ``[Ld, B, Q, 4]``.
    """
    num_layers = out.hs.shape[0]
    references = torch.cat([out.init_reference[None], out.inter_references[: num_layers - 1]], 0)
    logits, boxes = [], []
    for lvl in range(num_layers):
        logits.append(class_embed[lvl](out.hs[lvl]))
        boxes.append((bbox_embed[lvl](out.hs[lvl]) + inverse_sigmoid(references[lvl])).sigmoid())
    return torch.stack(logits), torch.stack(boxes), references
