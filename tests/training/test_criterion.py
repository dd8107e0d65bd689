"""Parity of the matchers and of every loss term with the official criterion (golden-criterion)."""

from __future__ import annotations

import pytest
import torch

from reference_data import golden, max_abs_diff
from uniref.training.criterion import LayerPredictions, LossWeights, SetCriterion, Target
from uniref.training.matcher import Match

CASES = ["image", "vos"]
TOL = 1e-5


def _targets(inputs: dict[str, torch.Tensor], case: str, num_images: int) -> list[Target]:
    targets = []
    for b in range(num_images):
        p = f"{case}.targets.{b}."
        w, h = inputs[p + "image_size"][:2].tolist()  # stored as (w, h, w, h)
        targets.append(Target(inputs[p + "labels"], inputs[p + "boxes"], inputs[p + "masks"], (int(h), int(w))))
    return targets


def _assert_match(match: Match, outputs: dict[str, torch.Tensor], prefix: str, *, with_best: bool) -> None:
    assert torch.equal(match.pred_idx, outputs[prefix + "pred_idx"]), prefix
    assert torch.equal(match.tgt_idx, outputs[prefix + "tgt_idx"]), prefix
    if with_best:
        assert torch.equal(match.best_query_per_target, outputs[prefix + "matched_query_per_gt"]), prefix


def _run_case(case: str):
    g = golden("golden-criterion")
    meta = g.meta["cases"][case]
    num_images, num_layers = len(meta["num_objects"]), meta["num_decoder_layers"]
    targets = _targets(g.inputs, case, num_images)
    criterion = SetCriterion(weights=LossWeights(), mask_aux_loss=g.meta["mask_aux_loss"])

    layers, matches = [], []
    for layer in range(num_layers):
        p = f"{case}.layer{layer}."
        preds = LayerPredictions(g.inputs[p + "pred_logits"], g.inputs[p + "pred_boxes"])
        layer_matches = criterion.match(preds, targets)
        for b, m in enumerate(layer_matches):
            _assert_match(m, g.outputs, f"outputs.{case}.matcher_ota.layer{layer}.{b}.", with_best=True)
        # official layout [1, m, 1, h, w] -> ours [m, h, w]
        preds.masks = [g.inputs[p + f"pred_masks.{b}"][0, :, 0] for b in range(num_images)]
        layers.append(preds)
        matches.append(layer_matches)

    encoder = LayerPredictions(g.inputs[f"{case}.enc.pred_logits"], g.inputs[f"{case}.enc.pred_boxes"])
    enc_matches = criterion.match_encoder(encoder, targets)
    for b, m in enumerate(enc_matches):
        _assert_match(m, g.outputs, f"outputs.{case}.matcher_hungarian_enc.{b}.", with_best=False)
    return g, criterion(layers, targets, matches, encoder=encoder, encoder_matches=enc_matches)


@pytest.mark.parametrize("case", CASES)
def test_matches_and_losses_equal_official(case: str):
    g, out = _run_case(case)
    expected_names = set(g.meta["cases"][case]["losses"])
    assert set(out.raw) == expected_names
    assert set(out.weighted) == expected_names
    for name in expected_names:
        for kind, ours in (("loss", out.raw[name]), ("loss_weighted", out.weighted[name])):
            ref = g.out(f"{case}.{kind}.{name}").reshape(())
            assert ours.shape == ()
            diff = max_abs_diff(ours, ref)
            assert diff <= TOL * max(1.0, ref.abs().item()), f"{case} {kind}.{name}: |diff| {diff:.3e}"
    total_ref = sum(g.out(f"{case}.loss_weighted.{n}").double().sum() for n in expected_names)
    assert abs(out.total.item() - total_ref.item()) <= TOL * total_ref.item()


def test_weight_dict_equals_official():
    g = golden("golden-criterion")
    assert LossWeights().weight_dict(num_decoder_layers=3) == g.meta["weight_dict"]


@pytest.mark.parametrize("case", CASES)
def test_target_from_pixel_boxes(case: str):
    g = golden("golden-criterion")
    for b, t_ref in enumerate(_targets(g.inputs, case, 2)):
        pixel = g.inputs[f"{case}.targets.{b}.boxes_unorm"]
        t = Target.from_pixel_boxes(t_ref.labels, pixel, t_ref.masks, t_ref.image_size)
        assert max_abs_diff(t.boxes, t_ref.boxes) < 1e-6
