import json

import torch

from reference_data import golden, max_abs_diff, reference_dir
from uniref.modeling.text import FeatureResizer, TextEncoderConfig, build_text_encoder, language_reference


def _tiny_modules():
    full = golden("full-tiny-public")
    bert = build_text_encoder(full.meta["tiny_bert_config"]).eval()
    bert.load_state_dict(full.weights_under("text_encoder."), strict=True)
    resizer = FeatureResizer(bert.config.hidden_size, 256).eval()
    resizer.load_state_dict(full.weights_under("resizer."), strict=True)
    return full, bert, resizer


def test_language_reference_matches_full_tiny():
    full, bert, resizer = _tiny_modules()
    for task in ("ris", "rvos"):
        with torch.no_grad():
            ref = language_reference(bert, resizer, full.inputs[f"{task}.input_ids"], full.inputs[f"{task}.attention_mask"])
        assert ref.num_levels == 1
        assert ref.refs[0] is ref.values[0]  # keys and values are the same tensor
        assert max_abs_diff(ref.refs[0], full.out(f"{task}.lang.refs")) <= 1e-5
        assert max_abs_diff(ref.embeds[0], full.out(f"{task}.lang.ref_embeds")) <= 1e-5
        assert torch.equal(ref.padding_mask[0], full.out(f"{task}.lang.masks"))
        # every level reads the same entry
        assert ref.level(3)[0] is ref.refs[0]


def test_embeds_are_mean_over_real_tokens():
    full, bert, resizer = _tiny_modules()
    ids, att = full.inputs["ris.input_ids"], full.inputs["ris.attention_mask"]
    with torch.no_grad():
        ref = language_reference(bert, resizer, ids, att)
    n = int(att.sum())
    assert torch.allclose(ref.embeds[0], ref.refs[0][:, :n].mean(1), atol=1e-6)
    assert not torch.allclose(ref.embeds[0], ref.refs[0].mean(1), atol=1e-3)


def test_bert_base_state_dict_equals_official_manifest():
    entries = json.loads((reference_dir() / "manifest-r50.json").read_text())["entries"]
    for prefix, build in (
        ("text_encoder.", lambda: build_text_encoder(TextEncoderConfig())),
        ("resizer.", lambda: FeatureResizer(768, 256)),
    ):
        expected = [(e["name"][len(prefix):], tuple(e["shape"])) for e in entries if e["name"].startswith(prefix)]
        with torch.device("meta"):
            module = build()
        ours = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
        assert sorted(ours) == sorted(expected)
    # position_ids is a non-persistent buffer, as in the manifest (transformers 4.31)
    assert not any(k.endswith("position_ids") for k, _ in ours)


def test_resizer_layout():
    resizer = FeatureResizer(768, 256)
    assert resizer.layer_norm.eps == 1e-12 and resizer.dropout.p == 0.1
    assert sum(p.numel() for p in resizer.parameters()) == 197_376
    assert resizer(torch.randn(2, 77, 768)).shape == (2, 77, 256)
