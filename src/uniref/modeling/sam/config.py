"""Named configurations of the UniRef-SAM family (spec section 12).

``sam_vit_h`` is the official variant (its state dict equals ``manifest-sam.json``); ``sam_vit_l`` and
``sam_vit_b`` keep the same design with the smaller SAM image encoders, so they load the official
``sam_vit_l_0b3195.pth`` / ``sam_vit_b_01ec64.pth`` checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from uniref.configs import SAM_CONFIG_NAMES, TestResize, TextConfig


@dataclass
class SamEncoderConfig:
    """The ViT image encoder of one SAM size (the values of Meta's ``build_sam_vit_*``)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0


SAM_ENCODERS: dict[str, SamEncoderConfig] = {
    "vit_b": SamEncoderConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamEncoderConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamEncoderConfig(1280, 32, 16, (7, 15, 23, 31)),
}


@dataclass
class UniRefSamConfig:
    """Everything that shapes a UniRef-SAM network. Defaults are the official ViT-H model.

    ``img_size`` may be reduced (a multiple of the patch size, e.g. 256 -> a 16x16 embedding) for CPU
    tests; official SAM checkpoints only load at 1024 because ``pos_embed`` and the global-attention
    ``rel_pos`` tables depend on it.

    ``official_padding_bug``: the official code builds the padding mask of the embedding grid from
    *pixel* sizes, so on a 64x64 grid no cell is ever marked as padding: a mask reference then
    attends to (and averages into its pooled embedding) the zero-padded area of a non-square reference
    image. False (our default) marks a grid cell as padding when all of its pixels are padding.
    """

    name: str = "sam_vit_h"
    encoder: str = "vit_h"
    img_size: int = 1024
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    fusion_heads: int = 8
    fusion_head_dim: int = 256
    fusion_dropout: float = 0.1
    bf16_fusion_attention: bool = True
    official_padding_bug: bool = False
    with_lang_ref: bool = True
    with_mask_ref: bool = True
    text: TextConfig = field(default_factory=TextConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.5

    @property
    def encoder_config(self) -> SamEncoderConfig:
        if self.encoder not in SAM_ENCODERS:
            raise ValueError(f"unknown SAM encoder {self.encoder!r}; known: {sorted(SAM_ENCODERS)}")
        return SAM_ENCODERS[self.encoder]

    @property
    def embedding_size(self) -> int:
        """Side of the square image-embedding grid (64 at 1024 px)."""
        return self.img_size // self.encoder_config.patch_size

    # The predictors read the UniRef++ test-size contract; for SAM every task uses SAM's own input:
    # longest side = img_size (shortest_edge_size(h, w, S, S) gives exactly that), padded to S x S.
    @property
    def ris_test_size(self) -> TestResize:
        return TestResize(self.img_size, self.img_size)

    @property
    def fss_test_size(self) -> TestResize:
        return TestResize(self.img_size, self.img_size)

    @property
    def video_test_size(self) -> TestResize:
        return TestResize(self.img_size, self.img_size)

    @property
    def mask_stride_vos(self) -> int:
        """SAM's masks come from its 4x-upsampled low-res logits; VOS asks for the full-resolution ones."""
        return 1

    def replace(self, **overrides) -> "UniRefSamConfig":
        """A copy with ``overrides``; ``text`` may be a dict of :class:`TextConfig` fields."""
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
        cfg.validate()
        return cfg

    def validate(self) -> None:
        patch = self.encoder_config.patch_size
        if self.img_size % patch:
            raise ValueError(f"img_size {self.img_size} must be a multiple of the patch size {patch}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict) -> "UniRefSamConfig":
        data = dict(data)
        text = TextConfig(**data.pop("text", {}))
        for key in ("pixel_mean", "pixel_std"):
            if key in data:
                data[key] = tuple(data[key])
        return UniRefSamConfig(text=text, **data)


# SAM_CONFIG_NAMES lives in uniref.configs so that available_configs() lists the family without importing it.


def get_sam_config(name: str, **overrides) -> UniRefSamConfig:
    """A fresh copy of the named config (``sam_vit_b`` / ``sam_vit_l`` / ``sam_vit_h``) with overrides."""
    if name not in SAM_CONFIG_NAMES:
        raise ValueError(f"unknown UniRef-SAM config {name!r}; known: {list(SAM_CONFIG_NAMES)}")
    cfg = UniRefSamConfig(name=name, encoder=name.removeprefix("sam_"))
    return cfg.replace(**overrides) if overrides else cfg


def sam_vit_b(**overrides) -> UniRefSamConfig:
    return get_sam_config("sam_vit_b", **overrides)


def sam_vit_l(**overrides) -> UniRefSamConfig:
    return get_sam_config("sam_vit_l", **overrides)


def sam_vit_h(**overrides) -> UniRefSamConfig:
    return get_sam_config("sam_vit_h", **overrides)
