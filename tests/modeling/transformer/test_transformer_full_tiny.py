"""The transformer and heads inside the recorded full-model run (``full-tiny-public``, README 5.2).

The recorded UniFusion outputs of the first call of RIS and VOS are fed to our transformer with the level
masks and sine position embeddings the official model builds for a 144x192 image padded to 160x192, and
every recorded transformer intermediate and head output is compared.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from reference_data import max_abs_diff, reference_dir
from test_deformable_transformer import assert_close_with_inf, sine_position_embedding
from uniref.modeling.transformer.deformable_transformer import DeformableTransformer
from uniref.modeling.transformer.heads import build_detection_heads, predict_per_layer

# the inputs are the recorded fusion outputs, so nothing here is downstream of our own bf16 attention
TOL = 1e-5
PREFIX = "weights.detr.detr."
_CACHE: dict[str, dict[str, torch.Tensor]] = {}


def _tensors() -> dict[str, torch.Tensor]:
    """Only the transformer/head weights and the call-0 tensors (the file is 120 MB)."""
    if "t" not in _CACHE:
        path = reference_dir() / "full-tiny-public.safetensors"
        if not path.is_file():
            pytest.skip(f"reference file {path} is absent")
        wanted = (PREFIX + "transformer.", PREFIX + "class_embed.", PREFIX + "bbox_embed.", PREFIX + "query_embed.",
                  "outputs.ris.call0.", "outputs.vos.call0.", "outputs.vos.ref_backbone0.masks.",
                  "inputs.ris.images_normalized_image_sizes")
        with safe_open(str(path), "pt") as f:
            _CACHE["t"] = {k: f.get_tensor(k) for k in f.keys() if k.startswith(wanted)}
    return _CACHE["t"]


def _weights(prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(PREFIX + prefix):]: v.float() for k, v in _tensors().items() if k.startswith(PREFIX + prefix)}


def _model():
    # the tiny config of README section 5: 2 encoder and 3 decoder layers, FFN 256, 10 proposals
    transformer = DeformableTransformer(
        num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=256, two_stage_num_proposals=10
    ).eval()
    weights = _weights("transformer.")
    for alias in ("class_embed.", "bbox_embed."):
        for k, v in _weights(alias).items():
            assert torch.equal(weights.pop("decoder." + alias + k), v)
    transformer.load_state_dict(weights, strict=True)
    class_embed, bbox_embed = build_detection_heads(256, 1, 3)
    class_embed.load_state_dict(_weights("class_embed."), strict=True)
    bbox_embed.load_state_dict(_weights("bbox_embed."), strict=True)
    return transformer, class_embed.eval(), bbox_embed.eval(), _weights("query_embed.")["weight"]


def _level_masks(shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The official masks: the image padding mask (rows 144..159 of 160x192) nearest-resized to each level."""
    assert _tensors()["inputs.ris.images_normalized_image_sizes"].tolist() == [[144, 192]]
    image_mask = torch.zeros(1, 160, 192, dtype=torch.bool)
    image_mask[:, 144:] = True
    return [F.interpolate(image_mask[None].float(), size=s).to(torch.bool)[0] for s in shapes]


def test_level_masks_equal_the_recorded_ones():
    t = _tensors()
    shapes = [tuple(t[f"outputs.vos.call0.fusion.srcs_out.{l}"].shape[-2:]) for l in range(4)]
    masks = _level_masks(shapes)
    assert masks[0].any() and masks[1].any()  # the padding reaches levels 0 and 1
    for l in range(4):
        assert torch.equal(masks[l], t[f"outputs.vos.ref_backbone0.masks.{l}"])


@pytest.mark.parametrize("task", ["ris", "vos"])
def test_transformer_intermediates_match_recorded_run(task: str):
    t = _tensors()
    call = f"outputs.{task}.call0."
    srcs = [t[f"{call}fusion.srcs_out.{l}"] for l in range(4)]
    masks = _level_masks([tuple(s.shape[-2:]) for s in srcs])
    pos = [sine_position_embedding(m) for m in masks]
    transformer, class_embed, bbox_embed, query = _model()
    with torch.no_grad():
        out = transformer(srcs, masks, pos, query, class_embed, bbox_embed)
        logits, boxes, refs = predict_per_layer(out, class_embed, bbox_embed)

    diffs = {}
    for name in ("hs", "init_reference", "inter_references", "enc_outputs_class", "enc_outputs_coord_unact"):
        diffs[name] = assert_close_with_inf(getattr(out, name), t[f"{call}transformer.{name}"], TOL)
    # the padded positions exist and are +inf in the recorded proposals
    assert torch.isinf(t[f"{call}transformer.enc_outputs_coord_unact"]).any()

    # the two-stage top-k: same proposals in the same order
    q = query.shape[0]
    ours = torch.topk(out.enc_outputs_class[..., 0], q, dim=1)[1]
    ref = torch.topk(t[f"{call}transformer.enc_outputs_class"][..., 0], q, dim=1)[1]
    assert torch.equal(ours, ref)

    # head outputs of the last layer, the mask head's reference points and the top-1 query
    assert max_abs_diff(logits[-1], t[f"{call}pred_logits"]) <= TOL
    assert max_abs_diff(boxes[-1], t[f"{call}pred_boxes"]) <= TOL
    assert max_abs_diff(refs[-1][..., :2], t[f"{call}reference_points"]) <= TOL
    assert torch.equal(logits[-1][..., 0].argmax(-1), t[f"{call}top1_query"])
    assert max(diffs.values()) <= TOL
