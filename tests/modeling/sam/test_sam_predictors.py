"""UniRef-SAM through the UniRef++ predictors (issue 7, proof 4): RIS, FSS, VOS and RVOS end to end on CPU with
the B-size config (128-pixel input, a 1-layer BERT with the real vocabulary size so the tokenizer fits), and
``uniref.build_model("sam_vit_b", ...)`` routing.

The SAM IoU head is pinned to a constant (``_set_iou``) where a test needs to know which side of a score
threshold the prediction falls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import uniref
from uniref.configs import get_config
from uniref.inference.image_predictor import ImagePredictor
from uniref.inference.preprocess import pad_mask, prepare_image, resize_mask_nearest
from uniref.inference.text import TextTokenizer
from uniref.inference.video_predictor import VideoPredictor
from uniref.modeling.reference.templates import aggregate_shots, concat_references
from uniref.modeling.sam import SamPredictorAdapter, UniRefSAM, sam_vit_b
from uniref.modeling.sam.padding import pad_to_square

S = 128  # input side: an 8x8 embedding grid
G = S // 16
TEXT = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _needs_vocab() -> None:
    from uniref.modeling.text.tokenizer import find_default_vocab

    try:
        find_default_vocab()
    except FileNotFoundError as exc:
        pytest.skip(f"no bert-base-uncased vocabulary: {exc}")


@pytest.fixture(scope="module")
def model() -> UniRefSAM:
    torch.manual_seed(0)
    m = UniRefSAM(sam_vit_b(img_size=S, text=TEXT)).eval()
    with torch.no_grad():  # a trained-looking UniFusion: the zero-initialised adaLN makes fusion the identity
        m.fusion.adaLN_modulation[1].weight.normal_(0, 0.05)
        m.fusion.adaLN_modulation[1].bias.normal_(0, 0.05)
    return m


def _set_iou(model: UniRefSAM, value: float | None) -> None:
    """Pin SAM's IoU prediction to ``value`` for every mask (None: restore random weights)."""
    last = model.sam.mask_decoder.iou_prediction_head.layers[-1]
    with torch.no_grad():
        if value is None:
            torch.manual_seed(1)
            last.reset_parameters()
        else:
            last.weight.zero_()
            last.bias.fill_(value)


@pytest.fixture()
def iou(model):
    def pin(value: float) -> None:
        _set_iou(model, value)

    yield pin
    _set_iou(model, None)


def _rng_image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _square(adapter: SamPredictorAdapter, image: np.ndarray):
    """The predictors' SAM input of one image, built by hand: PIL resize to longest side S, pad to S x S."""
    prepared = prepare_image(adapter, image, S, S)
    return prepared, pad_to_square(prepared.tensor[None], S)


# ---------------------------------------------------------------------------------------------- the adapter
def test_adapter_contract(model):
    adapter = model.predictor_adapter()
    assert isinstance(adapter, SamPredictorAdapter) and adapter.sam_model is model and adapter.eval() is adapter
    cfg = adapter.config
    assert (cfg.ris_test_size.short, cfg.ris_test_size.max_size) == (S, S) == (cfg.video_test_size.short, S)
    assert cfg.fss_test_size.max_size == S and cfg.mask_stride_vos == 1

    # the shortest-edge rule with (S, S) gives SAM's "longest side = S", for wide, tall and small images
    sizes = [prepare_image(adapter, _rng_image(0, h, w), S, S).size for h, w in ((60, 90), (200, 50), (30, 30))]
    assert sizes == [(85, 128), (128, 32), (128, 128)]

    a = prepare_image(adapter, _rng_image(1, 60, 90), S, S).tensor
    b = prepare_image(adapter, _rng_image(2, 200, 50), S, S).tensor
    batch, pad, image_sizes = adapter.pad_batch([a, b])
    assert batch.shape == (2, 3, S, S) and image_sizes.tolist() == [[85, 128], [128, 32]]
    assert pad[0, 85:].all() and not pad[0, :85].any() and pad[1, :, 32:].all()
    assert batch[0, :, 85:].abs().sum() == 0  # zero (= mean colour) padding
    with pytest.raises(ValueError, match="does not fit"):
        adapter.pad_batch([torch.zeros(3, S + 1, 10)])

    with torch.inference_mode():
        feats = adapter.extract_features(batch, pad)
        assert feats.embeddings.shape == (2, 256, G, G)
        assert feats.image_sizes.tolist() == image_sizes.tolist()  # recovered from the padding mask
        masks = torch.cat([pad_mask(np.ones((85, 128)), (S, S), model.device),
                           pad_mask(np.ones((128, 32)), (S, S), model.device)])
        ref = adapter.encode_mask(batch, masks, feats)
        # grid padding: ceil(85/16) = 6 of 8 rows valid; 32/16 = 2 of 8 columns valid
        assert ref.padding_mask[0].view(2, G, G)[0].logical_not().sum() == 6 * G
        assert ref.padding_mask[0].view(2, G, G)[1].logical_not().sum() == 2 * G

        out4 = adapter.decode(feats, image_sizes, mask=ref, masks="top1", mask_out_stride=4)
        out1 = adapter.decode(feats, image_sizes, mask=ref, masks="all", mask_out_stride=1)
        none = adapter.decode(feats, image_sizes, mask=ref, masks=None)
    assert out4.pred_masks.shape == (2, 1, 1, S // 4, S // 4) and out1.pred_masks.shape == (2, 1, 1, S, S)
    assert none.pred_masks is None
    up = F.interpolate(out4.pred_masks[:, :, 0], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out1.pred_masks[:, :, 0], up, rtol=0, atol=1e-6)
    assert out1.top1.tolist() == [0, 0] and out1.pred_logits.shape == (2, 1, 1)
    # the score the predictors compute (sigmoid of the logit) is SAM's IoU, clamped to (0, 1)
    torch.testing.assert_close(out1.pred_logits[:, 0, 0].sigmoid(), out1.scores.clamp(1e-6, 1 - 1e-6),
                               rtol=0, atol=1e-6)
    # boxes are the pixel boxes of the binarised masks inside each image
    for i, (h, w) in enumerate(image_sizes.tolist()):
        on = out1.pred_masks[i, 0, 0, :h, :w].sigmoid() > 0.5
        ys, xs = torch.nonzero(on, as_tuple=True)
        cx, cy, bw, bh = out1.pred_boxes[i, 0].tolist()
        if ys.numel() == 0:
            assert (cx, cy, bw, bh) == (0, 0, 0, 0)
            continue
        assert (cx - bw / 2) * w == pytest.approx(float(xs.min()), abs=1e-3)
        assert (cx + bw / 2) * w == pytest.approx(float(xs.max()) + 1, abs=1e-3)
        assert (cy - bh / 2) * h == pytest.approx(float(ys.min()), abs=1e-3)
        assert (cy + bh / 2) * h == pytest.approx(float(ys.max()) + 1, abs=1e-3)


def test_official_padding_bug_reaches_the_predictor_path(model):
    adapter = model.predictor_adapter()
    img = prepare_image(adapter, _rng_image(3, 200, 50), S, S).tensor
    batch, pad, _ = adapter.pad_batch([img])
    mask = pad_mask(np.ones((128, 32)), (S, S), model.device)
    with torch.inference_mode():
        feats = adapter.extract_features(batch, pad)
        fixed = adapter.encode_mask(batch, mask, feats)
        model.config.official_padding_bug = True
        try:
            buggy = adapter.encode_mask(batch, mask, feats)
        finally:
            model.config.official_padding_bug = False
    assert fixed.padding_mask[0].sum() == G * G - 2 * G and not buggy.padding_mask[0].any()
    # the pooled embedding (the sparse prompt token) averages only the image's own cells when fixed
    torch.testing.assert_close(fixed.embeds[0][0], feats.embeddings[0, :, :, :2].flatten(1).mean(1))
    torch.testing.assert_close(buggy.embeds[0][0], feats.embeddings[0].flatten(1).mean(1))


# ---------------------------------------------------------------------------------------------- image tasks
def test_ris_through_image_predictor(model, iou):
    _needs_vocab()
    iou(0.42)
    image = _rng_image(4, 60, 90)
    sentence = "the dog on the left"
    result = ImagePredictor(model).segment(image, text=sentence)

    adapter = model.predictor_adapter()
    prepared, square = _square(adapter, image)
    with torch.inference_mode():
        ids, att = TextTokenizer(adapter)([sentence], model.device)
        out = model.decode(model.encode_image(square), lang=model.encode_text(ids, att))
    h, w = prepared.size
    binary = (out.pred_masks[:, 0, :h, :w].sigmoid() > 0.5).float()
    expected = F.interpolate(binary[None], size=(60, 90), mode="nearest")[0, 0].bool().numpy()
    assert result.mask.shape == (60, 90)
    assert 0 < expected.sum() < expected.size  # a non-trivial mask, so the comparison means something
    np.testing.assert_array_equal(result.mask, expected)
    assert result.score == pytest.approx(0.42, abs=1e-6) and result.query == 0
    ys, xs = np.nonzero(result.mask)
    assert not result.box_empty
    # the box is the mask's box (scaled from the 85x128 input to 60x90, so within a pixel)
    np.testing.assert_allclose(result.box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)


def test_k_shot_fss_through_image_predictor(model, iou):
    iou(0.8)
    query = _rng_image(5, 70, 50)
    shots = [(_rng_image(6, 50, 80), _box_mask(50, 80, 10, 40, 20, 60)),
             (_rng_image(7, 90, 60), _box_mask(90, 60, 30, 80, 5, 30))]
    result = ImagePredictor(model).segment(query, examples=shots)

    adapter = model.predictor_adapter()
    with torch.inference_mode():
        refs = []
        for img, m in shots:
            prepared, square = _square(adapter, img)
            ref_mask = pad_mask(resize_mask_nearest(m, prepared.size), (S, S), model.device)
            emb = model.encode_image(square)
            refs.append(model.encode_mask(square, ref_mask, emb, torch.tensor([prepared.size])))
        from uniref.modeling.reference.features import ReferenceFeatures

        ref = aggregate_shots(ReferenceFeatures.cat_batch(refs))
        assert ref.refs[0].shape == (1, 2 * G * G, 256)
        prepared, square = _square(adapter, query)
        out = model.decode(model.encode_image(square), mask=ref)
    h, w = prepared.size
    binary = (out.pred_masks[:, 0, :h, :w].sigmoid() > 0.5).float()
    expected = F.interpolate(binary[None], size=(70, 50), mode="nearest")[0, 0].bool().numpy()
    np.testing.assert_array_equal(result.mask, expected)
    assert result.score == pytest.approx(0.8, abs=1e-6)


# ---------------------------------------------------------------------------------------------- video tasks
def _frames(n: int = 2) -> list[np.ndarray]:
    return [_rng_image(10 + i, 48, 64) for i in range(n)]


def test_vos_scores_are_sam_ious_and_the_threshold_applies(model, iou):
    frames = _frames()
    m1 = _box_mask(48, 64, 5, 30, 5, 40)
    m2 = _box_mask(48, 64, 25, 45, 30, 60)

    def run(engine: str, **kwargs):
        predictor = VideoPredictor(model, engine=engine, keep_probabilities=True, **kwargs)
        state = predictor.init_state(frames)
        predictor.add_mask(state, 0, 1, m1)
        predictor.add_mask(state, 0, 2, m2)
        return list(predictor.propagate(state))

    iou(0.45)
    fast = run("fast", preset="davis")  # sigma 0.3 < 0.45: tracked
    ref = run("reference", preset="davis")
    dropped = run("fast", preset="lvos")  # sigma 0.5 > 0.45: every prediction is dropped
    assert [r.obj_ids for r in fast] == [[1, 2], [1, 2]]
    np.testing.assert_array_equal(fast[0].masks, np.stack([m1, m2 & ~m1]))  # the given masks, merged
    assert fast[1].scores == pytest.approx([0.45, 0.45], abs=1e-6)
    assert fast[1].probabilities.max() > 0.5
    for a, b in zip(fast, ref):  # the two engines agree
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
    assert dropped[1].probabilities.max() == 0 and not dropped[1].label_map.any()

    # frame 1, object 1, by hand: init = prev = frame 0's reference; stride-1 logits, bilinear to 48x64
    adapter = model.predictor_adapter()
    with torch.inference_mode():
        prepared, sq0 = _square(adapter, frames[0])
        mask0 = pad_mask(resize_mask_nearest(m1, prepared.size), (S, S), model.device)
        r0 = model.encode_mask(sq0, mask0, model.encode_image(sq0), torch.tensor([prepared.size]))
        _, sq1 = _square(adapter, frames[1])
        out = model.decode(model.encode_image(sq1), mask=concat_references(r0, r0))
    h, w = prepared.size
    prob = out.pred_masks[:, :, :h, :w].sigmoid()
    expected = F.interpolate(prob, size=(48, 64), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(fast[1].probabilities[0], expected, atol=1e-5)


def test_rvos_propagate_and_per_frame(model, iou):
    _needs_vocab()
    frames = _frames()
    sentence = "a small cat"

    def run(**kwargs):
        predictor = VideoPredictor(model, keep_probabilities=True, **kwargs)
        state = predictor.init_state(frames)
        predictor.add_text(state, 3, sentence)
        return list(predictor.propagate(state))

    iou(0.6)
    results = run(rvos_mode="propagate")
    assert [r.obj_ids for r in results] == [[3], [3]] and all(r.texts == {3: sentence} for r in results)
    assert results[1].scores == pytest.approx([0.6], abs=1e-6)
    # frame 0 runs on language only: check it by hand
    adapter = model.predictor_adapter()
    with torch.inference_mode():
        ids, att = TextTokenizer(adapter)([sentence], model.device)
        prepared, sq0 = _square(adapter, frames[0])
        out = model.decode(model.encode_image(sq0), lang=model.encode_text(ids, att))
    h, w = prepared.size
    prob = F.interpolate(out.pred_masks[:, :, :h, :w].sigmoid(), size=(48, 64), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    assert 0 < (prob > 0.5).sum() < prob.size
    np.testing.assert_array_equal(results[0].masks[0], prob > 0.5)
    # frame 1 also uses the mask reference built from frame 0's mask: it differs from language alone
    per_frame = run(rvos_mode="per_frame")
    np.testing.assert_allclose(per_frame[0].probabilities[0], prob, atol=1e-5)
    assert np.abs(per_frame[1].probabilities[0] - results[1].probabilities[0]).max() > 1e-4

    iou(0.2)  # under the RVOS threshold (0.3): no mask in any frame
    assert not any(r.masks.any() for r in run(rvos_mode="propagate"))


# ---------------------------------------------------------------------------------------------- build_model
def test_build_model_routes_the_sam_names(model, tmp_path):
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h"} <= set(uniref.available_configs())
    assert {"r50", "swinl", "tiny"} <= set(uniref.available_configs())
    with pytest.raises(ValueError, match="known configs: .*sam_vit_b.*sam_vit_h"):
        uniref.build_model("sam_vit_x")
    cfg = get_config("sam_vit_l", img_size=256)  # the SAM family's own config class
    assert type(cfg).__name__ == "UniRefSamConfig" and cfg.encoder == "vit_l" and cfg.img_size == 256
    with pytest.raises(ValueError, match="only apply to the UniRef-SAM configs"):
        uniref.build_model("tiny", sam_weights="x.pth")

    # weights=: one of our (or an official) UniRef-SAM state dicts, strictly
    path = tmp_path / "uniref_sam_b.pth"
    torch.save({"model": model.state_dict()}, path)
    built = uniref.build_model("sam_vit_b", weights=path, img_size=S, text=TEXT)
    assert isinstance(built, UniRefSAM) and built.config.name == "sam_vit_b" and not built.training
    assert built.config.encoder == "vit_b" and built.config.img_size == S
    own = built.state_dict()
    assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())

    # sam_weights= (Meta's key layout) + text_weights= (a UniRef++ checkpoint's text encoder and resizer)
    sam_path, text_path = tmp_path / "sam_vit_b.pth", tmp_path / "uniref_pp.pth"
    torch.save(model.sam.state_dict(), sam_path)
    text = {f"text_encoder.{k}": v for k, v in model.text_encoder.state_dict().items()}
    text |= {f"resizer.{k}": v for k, v in model.resizer.state_dict().items()}
    torch.save({"model": text | {"detr.detr.query_embed.weight": torch.zeros(3, 256)}}, text_path)
    started = uniref.build_model("sam_vit_b", sam_weights=sam_path, text_weights=text_path, img_size=S, text=TEXT)
    own = started.state_dict()
    for k, v in model.state_dict().items():
        if k.startswith(("sam.", "text_encoder.", "resizer.")):
            assert torch.equal(own[k], v), k

    # a config object routes too, and our .safetensors with a stored SAM config rebuilds itself
    from uniref.checkpoint import save_safetensors

    st = tmp_path / "uniref_sam_b.safetensors"
    save_safetensors(model.state_dict(), st, metadata={"uniref_config": json.dumps(model.config.to_dict())})
    rebuilt = uniref.build_model_from_checkpoint(st)
    assert isinstance(rebuilt, UniRefSAM) and rebuilt.config.img_size == S
    assert torch.equal(rebuilt.state_dict()["fusion.adaLN_modulation.1.weight"],
                       model.state_dict()["fusion.adaLN_modulation.1.weight"])
    assert isinstance(uniref.build_model(model.config), UniRefSAM)


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.slow
def test_cli_config_sam_vit_b_runs_the_four_tasks(model, tmp_path, monkeypatch, capsys):
    """``uniref ris|fss|vos|rvos --config sam_vit_b``: the name reaches the SAM builder through get_config and
    build_model. The named config is shrunk to the test model's size (the CLI has no size option)."""
    _needs_vocab()
    from PIL import Image

    import uniref.modeling.sam.config as sam_config
    from uniref.cli import main
    from uniref.io.masks import save_label_png

    small = model.config
    monkeypatch.setattr(sam_config, "get_sam_config", lambda name, **kw: small.replace(name=name, **kw))
    weights = tmp_path / "uniref_sam_b.pth"
    torch.save({"model": model.state_dict()}, weights)
    frames = tmp_path / "clip"
    frames.mkdir()
    for i, frame in enumerate(_frames()):
        Image.fromarray(frame).save(frames / f"{i:05d}.png")
    image, mask = tmp_path / "photo.png", tmp_path / "first.png"
    Image.fromarray(_rng_image(20, 60, 90)).save(image)
    labels = _box_mask(48, 64, 5, 30, 5, 40).astype(np.uint8)
    save_label_png(mask, labels)
    example_mask = tmp_path / "ex_mask.png"
    save_label_png(example_mask, _box_mask(60, 90, 10, 40, 10, 50).astype(np.uint8))
    common = ["--config", "sam_vit_b", "--weights", str(weights)]
    runs = {
        "ris": ["ris", str(image), "--text", "the dog"],
        "fss": ["fss", str(image), "--example", str(image), str(example_mask)],
        "vos": ["vos", str(frames), "--masks", str(mask)],
        "rvos": ["rvos", str(frames), "--text", "a cat"],
    }
    for task, argv in runs.items():
        out = tmp_path / f"out_{task}"
        assert main(argv + common + ["--out", str(out)]) == 0, capsys.readouterr().err
        written = sorted(p.name for p in out.rglob("*") if p.is_file())
        assert written, task
    # RIS writes the mask the ImagePredictor gives
    ris_png = np.asarray(Image.open(tmp_path / "out_ris" / "photo.png")) > 0
    np.testing.assert_array_equal(ris_png, ImagePredictor(model).segment(np.asarray(Image.open(image)),
                                                                        text="the dog").mask)
