"""Two-stage Deformable-DETR transformer and its detection heads."""

from uniref.modeling.transformer.deformable_transformer import DeformableTransformer, TransformerOutput
from uniref.modeling.transformer.heads import build_detection_heads, predict_per_layer

__all__ = ["DeformableTransformer", "TransformerOutput", "build_detection_heads", "predict_per_layer"]
