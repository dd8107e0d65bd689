"""Proof 2 and the UniRef-SAM loaders: plain SAM checkpoints, UniRef++ text weights, official state dicts."""

import pytest
import torch
from segment_anything import build_sam_vit_b

from sam_test_utils import TINY_TEXT, small_config
from uniref.checkpoint import CheckpointError
from uniref.modeling.sam import (
    UniRefSAM,
    load_sam_weights,
    load_uniref_sam_checkpoint,
    sam_vit_b,
    to_official_sam_state_dict,
)
from uniref.modeling.text import FeatureResizer, build_text_encoder


@pytest.fixture(scope="module")
def plain_sam_b(tmp_path_factory):
    """Meta's own ViT-B SAM (random weights), saved the way Meta ships ``sam_vit_b_01ec64.pth``."""
    torch.manual_seed(1)
    sam = build_sam_vit_b()
    with torch.no_grad():  # rel_pos tables and pos_embed start at zero; make every tensor distinctive
        for p in sam.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(sam.state_dict(), path)
    return path, sam.state_dict()


def test_plain_sam_checkpoint_loads_strictly(plain_sam_b):
    path, reference = plain_sam_b
    model = UniRefSAM(sam_vit_b(text=TINY_TEXT))
    report = load_sam_weights(model, path)
    assert report.ok
    assert report.not_loaded == ["fusion", "mask_encoder", "resizer", "text_encoder"]
    own = model.state_dict()
    assert len(reference) == len([k for k in own if k.startswith("sam.")])
    for k, v in reference.items():
        assert torch.equal(own["sam." + k], v), k


def test_plain_sam_plus_uniref_text_encoder(plain_sam_b, tmp_path):
    path, _ = plain_sam_b
    torch.manual_seed(2)
    bert = build_text_encoder(dict(TINY_TEXT))
    resizer = FeatureResizer(TINY_TEXT["hidden_size"], 256)
    # An official UniRef++ checkpoint: top-level text_encoder.* / resizer.* next to the rest of the model,
    # wrapped in {"model": ...}, with the position_ids buffer older transformers versions saved.
    state = {f"text_encoder.{k}": v for k, v in bert.state_dict().items()}
    state |= {f"resizer.{k}": v for k, v in resizer.state_dict().items()}
    state["text_encoder.embeddings.position_ids"] = torch.arange(512)[None]
    state["detr.detr.query_embed.weight"] = torch.zeros(300, 256)
    uniref_path = tmp_path / "uniref_pp.pth"
    torch.save({"model": state, "iteration": 5}, uniref_path)

    model = UniRefSAM(sam_vit_b(text=TINY_TEXT))
    report = load_sam_weights(model, path, uniref_checkpoint=uniref_path)
    assert report.ok and report.not_loaded == ["fusion", "mask_encoder"]
    for k, v in bert.state_dict().items():
        assert torch.equal(model.text_encoder.state_dict()[k], v), k
    assert torch.equal(model.resizer.fc.weight, resizer.fc.weight)


def test_plain_sam_of_another_size_is_refused_with_a_report(plain_sam_b):
    path, _ = plain_sam_b
    model = UniRefSAM(small_config())  # 256-pixel input: pos_embed / global rel_pos differ
    before = model.sam.mask_decoder.iou_token.weight.clone()
    with pytest.raises(CheckpointError) as err:
        load_sam_weights(model, path)
    msg = str(err.value)
    assert "shape mismatch" in msg and "sam.image_encoder.pos_embed" in msg
    # Strict failure loads nothing.
    assert torch.equal(model.sam.mask_decoder.iou_token.weight, before)


def test_official_uniref_sam_state_dict_round_trip(small_model, tmp_path):
    official = to_official_sam_state_dict(small_model.state_dict())
    assert all(k.startswith("model.") for k in official)
    path = tmp_path / "uniref_sam.pth"
    torch.save({"model": official}, path)
    torch.manual_seed(3)
    fresh = UniRefSAM(small_config())
    assert not torch.equal(fresh.fusion.attn.q_proj.weight, small_model.fusion.attn.q_proj.weight)
    report = load_uniref_sam_checkpoint(fresh, path)
    assert report.ok
    for (k, a), b in zip(small_model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    # A raw dict in our own names loads too.
    assert load_uniref_sam_checkpoint(fresh, small_model.state_dict()).ok


def test_official_state_dict_errors_are_reported(small_model):
    official = to_official_sam_state_dict(small_model.state_dict())
    del official["model.fusion_module.norm_v.weight"]
    official["model.value_encoder.layer4.0.conv1.weight"] = torch.zeros(1)
    official["model.resizer.fc.weight"] = torch.zeros(3, 3)
    official["model.criterion.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_uniref_sam_checkpoint(small_model, official)
    msg = str(err.value)
    assert "missing from the checkpoint (1)" in msg and "model.fusion_module.norm_v.weight" in msg
    assert "model.value_encoder.layer4.0.conv1.weight" in msg and "model.criterion.extra" in msg
    assert "model.resizer.fc.weight: checkpoint (3, 3) vs model (256, 32)" in msg
    report = load_uniref_sam_checkpoint(small_model, official, strict=False)
    assert len(report.missing) == 1 and len(report.unexpected) == 2 and len(report.mismatched) == 1
