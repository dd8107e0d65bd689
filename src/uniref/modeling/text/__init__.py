"""Text side of the language reference: BERT, the feature resizer and the tokenizer helpers."""

from uniref.modeling.text.text_encoder import (
    FeatureResizer,
    TextEncoderConfig,
    build_text_encoder,
    language_reference,
)
from uniref.modeling.text.tokenizer import (
    CONTEXT_LENGTH,
    build_tokenizer,
    clean_expression,
    find_default_vocab,
    tokenize,
)

__all__ = [
    "CONTEXT_LENGTH",
    "FeatureResizer",
    "TextEncoderConfig",
    "build_text_encoder",
    "build_tokenizer",
    "clean_expression",
    "find_default_vocab",
    "language_reference",
    "tokenize",
]
