"""The language reference: BERT word features, the 768->256 resizer and the pooled sentence embedding.

The full model keeps BERT and the resizer as two top-level modules (state-dict prefixes ``text_encoder.``
and ``resizer.``), so they are built separately here and combined by :func:`language_reference`.

Naming: ``B`` sentences, ``T`` tokens (77), ``E`` BERT width, ``C`` model width (256).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from uniref.modeling.reference.features import ReferenceFeatures


@dataclass
class TextEncoderConfig:
    """The BERT shape; defaults are bert-base-uncased, as every official config uses."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0

    def to_bert_config(self) -> BertConfig:
        return BertConfig(**asdict(self))


def build_text_encoder(
    config: TextEncoderConfig | BertConfig | dict[str, Any] | None = None, *, attn_implementation: str = "eager"
) -> BertModel:
    """A randomly initialised ``BertModel`` (with pooler) from a config; never loads anything from a hub.

    The pooler is unused by UniRef but kept so that official checkpoints load strictly.
    ``attn_implementation`` defaults to ``"eager"``, the formulation of the transformers release the
    official code pins, which reproduces its word features bit for bit; ``"sdpa"`` is faster and differs
    by ~1e-6.
    """
    if config is None:
        config = TextEncoderConfig()
    if isinstance(config, TextEncoderConfig):
        config = config.to_bert_config()
    elif isinstance(config, dict):
        config = BertConfig(**config)
    model = BertModel(config, add_pooling_layer=True)
    model.set_attn_implementation(attn_implementation)
    return model


class FeatureResizer(nn.Module):
    """Linear projection of the word features to the model width, then LayerNorm and dropout.

    Official names: ``fc``, ``layer_norm`` (eps 1e-12), ``dropout``.
    """

    def __init__(self, input_dim: int, output_dim: int, dropout: float = 0.1):
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim, bias=True)
        self.layer_norm = nn.LayerNorm(output_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., input_dim]`` -> ``[..., output_dim]``."""
        return self.dropout(self.layer_norm(self.fc(x)))


def language_reference(
    bert: BertModel, resizer: FeatureResizer, input_ids: Tensor, attention_mask: Tensor
) -> ReferenceFeatures:
    """Encode tokenised sentences into a one-level reference dictionary (official ``forward_text``).

    Args:
        bert: the text encoder.
        resizer: word-feature projection to the model width.
        input_ids: ``[B, T]`` int64 token ids.
        attention_mask: ``[B, T]`` 1 on real tokens ([CLS] and [SEP] included), 0 on padding.

    Returns:
        ``refs = values`` = resized word features ``[B, T, C]``, ``padding_mask = attention_mask != 1``
        ``[B, T]`` and ``embeds`` = mean of the resized features over the non-padding tokens ``[B, C]``;
        one level, shared by every visual level.
    """
    words = bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, E]
    feats = resizer(words)  # [B, T, C]
    padding_mask = attention_mask != 1
    keep = (~padding_mask).to(feats.dtype)
    embeds = (feats * keep[..., None]).sum(dim=1) / keep.sum(dim=1, keepdim=True)
    return ReferenceFeatures([feats], [feats], [padding_mask], [embeds])
