"""Sentence -> token ids for a model, with the checks that keep the tokenizer honest offline."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from uniref.modeling.text.tokenizer import build_tokenizer, clean_expression, find_default_vocab


class TextTokenizer:
    """Cleans sentences (spec 2.4) and tokenizes them to the model's context length (77)."""

    def __init__(self, model):
        cfg = model.config.text
        vocab = cfg.vocab_file or find_default_vocab()
        self.tokenizer = build_tokenizer(vocab, vocab_size=cfg.vocab_size)
        self.context_length = cfg.context_length

    def __call__(self, sentences: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """Clean and tokenize -> ``(input_ids [B, 77], attention_mask [B, 77])``."""
        cleaned = []
        for s in sentences:
            if not isinstance(s, str) or not s.strip():
                raise ValueError(f"empty text: {s!r}; give a sentence that describes the object")
            c = clean_expression(s)
            if not c.strip():
                raise ValueError(f"text {s!r} has no words left after cleaning")
            cleaned.append(c)
        enc = self.tokenizer(
            cleaned, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt"
        )
        full = self.tokenizer(cleaned, add_special_tokens=True)["input_ids"]
        for s, ids in zip(sentences, full):
            if len(ids) > self.context_length:
                warnings.warn(
                    f"text {s[:40]!r}... has {len(ids)} tokens; truncated to {self.context_length}", stacklevel=3
                )
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)
