"""Reference fusion into the visual feature levels (UniFusion)."""

from uniref.modeling.fusion.unifusion import UniFusion, UniMultiHeadAttention

__all__ = ["UniFusion", "UniMultiHeadAttention"]
