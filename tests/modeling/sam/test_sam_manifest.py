"""Proof 1: the ViT-H UniRef-SAM state dict equals the official ``manifest-sam.json`` one to one."""

import torch

from uniref.modeling.sam import (
    SAM_CONFIG_NAMES,
    UniRefSAM,
    get_sam_config,
    parameter_counts,
    sam_ours_to_official,
    to_official_sam_state_dict,
)


def _buffers(model: torch.nn.Module) -> set[str]:
    return {name for name, _ in model.named_buffers()}


def test_state_dict_equals_manifest(vit_h_meta, sam_manifest):
    ours = to_official_sam_state_dict(vit_h_meta.state_dict())
    entries = sam_manifest["entries"]
    assert len(ours) == sam_manifest["num_state_dict_entries"] == len(entries)
    # Same names in the same order (the manifest is in official state_dict() order).
    assert list(ours) == [e["name"] for e in entries]
    sd = vit_h_meta.state_dict()
    own_buffers = {sam_ours_to_official(n) for n in _buffers(vit_h_meta) if n in sd}
    for e in entries:
        t = ours[e["name"]]
        assert list(t.shape) == e["shape"], e["name"]
        assert str(t.dtype).removeprefix("torch.") == e["dtype"], e["name"]
        assert (e["name"] in own_buffers) == e["is_buffer"], e["name"]
    assert sum(e["is_buffer"] for e in entries) == sam_manifest["num_buffer_entries"]


def test_parameter_totals_equal_manifest(vit_h_meta, sam_manifest):
    total = sum(p.numel() for p in vit_h_meta.parameters())
    assert total == sam_manifest["total_parameters_unique_module_parameters"] == 759_998_947
    by_prefix = sam_manifest["totals_by_second_level_prefix"]
    counts = parameter_counts(vit_h_meta)
    sam_total = sum(a for part, (_, a) in counts.items() if part.startswith("sam."))
    assert sam_total == by_prefix["model.sam"]["params"]
    assert counts["text_encoder"][1] == by_prefix["model.text_encoder"]["params"]
    assert counts["resizer"][1] == by_prefix["model.resizer"]["params"]
    assert counts["mask_encoder"][1] == by_prefix["model.value_encoder"]["params"]
    assert counts["fusion"][1] == by_prefix["model.fusion_module"]["params"]


def test_pixel_statistics_are_not_persistent(vit_h_meta):
    sd = vit_h_meta.state_dict()
    assert "pixel_mean" in _buffers(vit_h_meta) and "pixel_mean" not in sd and "pixel_std" not in sd


def test_smaller_sizes_keep_the_layout():
    # ViT-B / ViT-L: the same parts, only the image encoder differs (depth, width).
    with torch.device("meta"):
        h = UniRefSAM(get_sam_config("sam_vit_h", text={"num_hidden_layers": 1}))
        b = UniRefSAM(get_sam_config("sam_vit_b", text={"num_hidden_layers": 1}))
    strip = lambda sd: {k: v.shape for k, v in sd.items() if not k.startswith("sam.image_encoder.")}  # noqa: E731
    assert strip(h.state_dict()) == strip(b.state_dict())
    assert b.state_dict()["sam.image_encoder.pos_embed"].shape == (1, 64, 64, 768)
    assert len([k for k in b.state_dict() if k.endswith("attn.qkv.weight")]) == 12
    assert set(SAM_CONFIG_NAMES) == {"sam_vit_b", "sam_vit_l", "sam_vit_h"}
