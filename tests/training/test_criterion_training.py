"""Training behaviour of SetCriterion: gradients, images without targets, mask strides, autocast."""

from __future__ import annotations

import pytest
import torch

from uniref.training import losses as L
from uniref.training.criterion import LayerPredictions, SetCriterion, Target, matched_batch_indices

PAD = 32  # padded image size (a multiple of 32)
QUERIES = 6
LAYERS = 2


def _target(num_objects: int, seed: int) -> Target:
    g = torch.Generator().manual_seed(seed)
    h, w = 28, 30
    x0 = torch.randint(0, 12, (num_objects,), generator=g)
    y0 = torch.randint(0, 12, (num_objects,), generator=g)
    x1 = x0 + torch.randint(6, 16, (num_objects,), generator=g)
    y1 = y0 + torch.randint(6, 14, (num_objects,), generator=g)
    masks = torch.zeros(num_objects, PAD, PAD, dtype=torch.bool)
    for i in range(num_objects):
        masks[i, y0[i]:y1[i], x0[i]:x1[i]] = True
    boxes = torch.stack([x0, y0, x1, y1], -1).float()
    return Target.from_pixel_boxes(torch.zeros(num_objects, dtype=torch.int64), boxes, masks, (h, w))


class _Batch:
    """Leaf tensors standing in for the network outputs, and the official call sequence on them."""

    def __init__(self, num_objects: tuple[int, ...], mask_size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        b = len(num_objects)
        self.targets = [_target(n, seed + 10 * i) for i, n in enumerate(num_objects)]
        self.logits = torch.randn(LAYERS, b, QUERIES, 1, generator=g).requires_grad_()
        self.box_raw = (0.5 * torch.randn(LAYERS, b, QUERIES, 4, generator=g) - 0.5).requires_grad_()
        self.masks = torch.randn(LAYERS, b, QUERIES, mask_size, mask_size, generator=g).requires_grad_()
        self.enc_logits = torch.randn(b, 2 * QUERIES, 1, generator=g).requires_grad_()
        self.enc_box_raw = (0.5 * torch.randn(b, 2 * QUERIES, 4, generator=g) - 0.5).requires_grad_()

    def subset(self, images: list[int]) -> _Batch:
        other = object.__new__(_Batch)
        other.targets = [self.targets[i] for i in images]
        for name in ("logits", "box_raw", "masks"):
            setattr(other, name, getattr(self, name)[:, images].detach().requires_grad_())
        for name in ("enc_logits", "enc_box_raw"):
            setattr(other, name, getattr(self, name)[images].detach().requires_grad_())
        return other

    def run(self, criterion: SetCriterion, *, cast=None):
        """``cast`` maps every network output (after the box sigmoid) before the criterion sees it."""

        def c(x: torch.Tensor) -> torch.Tensor:
            return x if cast is None else cast(x)

        layers, matches = [], []
        for layer in range(LAYERS):
            preds = LayerPredictions(c(self.logits[layer]), c(self.box_raw[layer].sigmoid()))
            layer_matches = criterion.match(preds, self.targets)
            # the mask head runs on the matched queries only
            batch_idx, query_idx = matched_batch_indices(layer_matches)
            flat = c(self.masks[layer])[batch_idx, query_idx]
            preds.masks = list(flat.split([m.num_matched for m in layer_matches]))
            layers.append(preds)
            matches.append(layer_matches)
        encoder = LayerPredictions(c(self.enc_logits), c(self.enc_box_raw.sigmoid()))
        return criterion(layers, self.targets, matches, encoder=encoder), matches


def test_gradients_reach_logits_boxes_and_matched_mask_logits():
    batch = _Batch((2, 1), mask_size=PAD // 4)
    out, matches = batch.run(SetCriterion())
    assert len(out.raw) == 7 * LAYERS + 3
    out.total.backward()
    for leaf in (batch.logits, batch.box_raw, batch.masks, batch.enc_logits, batch.enc_box_raw):
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    for layer in range(LAYERS):
        assert batch.logits.grad[layer].abs().sum() > 0 and batch.box_raw.grad[layer].abs().sum() > 0
        matched = torch.zeros(2, QUERIES, dtype=torch.bool)
        b_idx, q_idx = matched_batch_indices(matches[layer])
        matched[b_idx, q_idx] = True
        per_query = batch.masks.grad[layer].abs().flatten(2).sum(-1)
        assert (per_query[matched] > 0).all() and (per_query[~matched] == 0).all()
    # every individual term is differentiable as well
    for name, value in out.raw.items():
        assert value.requires_grad, name


def test_image_without_targets_adds_only_its_background_class_term():
    full = _Batch((2, 0), mask_size=PAD // 4)
    alone = full.subset([0])
    criterion = SetCriterion()
    out_full, matches = full.run(criterion)
    out_alone, _ = alone.run(criterion)
    assert all(m[1].num_matched == 0 for m in matches)
    assert set(out_full.raw) == set(out_alone.raw)
    for name, value in out_full.raw.items():
        if name.startswith("loss_ce"):
            continue
        torch.testing.assert_close(value, out_alone.raw[name], rtol=1e-6, atol=1e-7, msg=name)
    # the normaliser counts matched queries only, so the empty image adds its focal background sum / N
    for layer, suffix in ((LAYERS - 1, ""), (0, "_0")):
        n = sum(m.num_matched for m in matches[layer])
        background = L.sigmoid_focal_loss(full.logits[layer, 1], torch.zeros(QUERIES, 1)).sum() / n
        torch.testing.assert_close(out_full.raw["loss_ce" + suffix], out_alone.raw["loss_ce" + suffix] + background)
    out_full.total.backward()
    assert full.masks.grad[:, 1].abs().sum() == 0  # nothing matched in the empty image


def test_batch_without_any_target_gives_zero_box_and_mask_terms():
    batch = _Batch((0, 0), mask_size=PAD)
    out, matches = batch.run(SetCriterion())
    assert all(m.num_matched == 0 for layer in matches for m in layer)
    for name, value in out.raw.items():
        assert torch.isfinite(value), name
        if name.startswith("loss_ce"):
            assert value > 0  # all queries are pushed to background (normaliser clamped to 1)
        else:
            assert value.item() == 0.0, name
    out.total.backward()
    assert torch.isfinite(batch.logits.grad).all() and batch.logits.grad.abs().sum() > 0


def test_vos_masks_at_padded_size_use_full_resolution_targets():
    batch = _Batch((1,), mask_size=PAD)
    out, matches = batch.run(SetCriterion())
    m = matches[-1][0]
    src = batch.masks[-1, 0, m.pred_idx].flatten(1)
    tgt = batch.targets[0].masks[m.tgt_idx].flatten(1).float()
    expected = L.dice_loss(src, tgt).sum() / m.num_matched
    torch.testing.assert_close(out.raw["loss_dice"], expected)


def test_stride_four_masks_use_targets_sampled_at_offset_two():
    batch = _Batch((1,), mask_size=PAD // 4)
    out, matches = batch.run(SetCriterion())
    m = matches[-1][0]
    src = batch.masks[-1, 0, m.pred_idx].flatten(1)
    tgt = batch.targets[0].masks[m.tgt_idx][:, 2::4, 2::4].flatten(1).float()
    torch.testing.assert_close(out.raw["loss_dice"], L.dice_loss(src, tgt).sum() / m.num_matched)


def test_mask_shape_errors_explain_the_fix():
    criterion = SetCriterion()
    target = _target(1, 0)
    preds = LayerPredictions(torch.randn(1, QUERIES, 1), torch.rand(1, QUERIES, 4) * 0.3 + 0.3)
    (match,) = criterion.match(preds, [target])
    preds.masks = [torch.randn(match.num_matched, 10, 10)]  # 32 / 10 is not an integer stride
    with pytest.raises(ValueError, match="stride"):
        criterion([preds], [target], [[match]])
    preds.masks = [torch.randn(match.num_matched + 1, 8, 8)]
    with pytest.raises(ValueError, match="matched queries"):
        criterion([preds], [target], [[match]])


def test_without_mask_aux_loss_or_masks():
    batch = _Batch((2,), mask_size=PAD // 4)
    out, _ = batch.run(SetCriterion(mask_aux_loss=False))
    assert "loss_mask_cls" not in out.raw and "loss_mask_iou_0" not in out.raw and "loss_dice" in out.raw
    preds = LayerPredictions(batch.logits[0], batch.box_raw[0].sigmoid())
    criterion = SetCriterion()
    raw = criterion([preds], batch.targets, [criterion.match(preds, batch.targets)]).raw
    assert set(raw) == {"loss_ce", "loss_bbox", "loss_giou"}


def test_losses_run_in_float32_under_autocast():
    batch = _Batch((2, 1), mask_size=PAD // 4)
    criterion = SetCriterion()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out_amp, _ = batch.run(criterion, cast=lambda x: x.to(torch.bfloat16))
    # the same bf16 values upcast by hand, without autocast: fp32 internals give the same numbers
    out_ref, _ = batch.run(criterion, cast=lambda x: x.to(torch.bfloat16).float())
    assert set(out_amp.raw) == set(out_ref.raw)
    for name, value in out_amp.raw.items():
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, out_ref.raw[name], rtol=1e-6, atol=1e-7, msg=name)
    out_amp.total.backward()
    assert batch.masks.grad is not None and torch.isfinite(batch.masks.grad).all()
