"""Small configs shared by the UniRef-SAM tests."""

from uniref.modeling.sam import UniRefSamConfig, sam_vit_b

# A 1-layer, 32-wide BERT keeps the CPU cost of the text side negligible.
TINY_TEXT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
# 256-pixel input: a 16x16 embedding grid, 64x64 low-res logits.
SMALL_IMG = 256


def small_config(**overrides) -> UniRefSamConfig:
    """The B-size UniRef-SAM at a 256-pixel input with a tiny BERT."""
    return sam_vit_b(**{"img_size": SMALL_IMG, "text": TINY_TEXT, **overrides})
