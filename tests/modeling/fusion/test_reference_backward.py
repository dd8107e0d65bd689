"""One training-mode step through text encoder, resizer, mask encoder and UniFusion: every parameter learns."""

import pytest
import torch

from uniref.modeling.fusion import UniFusion
from uniref.modeling.reference.mask_encoder import MaskReferenceEncoder
from uniref.modeling.reference.templates import aggregate_shots, concat_references, mask_reference
from uniref.modeling.text import FeatureResizer, TextEncoderConfig, build_text_encoder, language_reference


@pytest.mark.parametrize("bf16,fused", [(True, False), (False, True)])
def test_every_parameter_gets_a_gradient(bf16, fused):
    torch.manual_seed(0)
    bert = build_text_encoder(TextEncoderConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=64)).train()
    resizer = FeatureResizer(32, 256).train()
    encoder = MaskReferenceEncoder().train()
    fusion = UniFusion(bf16_attention=bf16, fused_attention=fused).train()
    # the zero-initialised modulation would block every gradient except its own
    torch.nn.init.normal_(fusion.adaLN_modulation[1].weight, std=0.02)

    b, size = 2, 64
    image = torch.randn(b, 3, size, size)
    mask = (torch.rand(b, 1, size, size) > 0.5).float()
    srcs = [torch.randn(b, 256, size // s, size // s, requires_grad=True) for s in (8, 16, 32, 64)]
    pads = [torch.zeros(b, size // s, size // s, dtype=torch.bool) for s in (8, 16, 32, 64)]
    pads[0][1, :, -2:] = True
    ids = torch.randint(1, 50, (b, 7))
    att = torch.ones(b, 7, dtype=torch.long)
    att[0, 5:] = 0

    lang = language_reference(bert, resizer, ids, att)
    template = mask_reference(encoder, image, mask, srcs, pads)
    ref = concat_references(aggregate_shots(template, num_shots=1), template)
    out = fusion(srcs, lang=lang, mask=ref)
    sum(o.square().mean() for o in out).backward()

    modules = {"fusion": fusion, "mask_encoder": encoder, "resizer": resizer, "text_encoder": bert}
    missing = [
        f"{prefix}.{name}"
        for prefix, module in modules.items()
        for name, p in module.named_parameters()
        # BERT's pooler is unused by UniRef (kept only for checkpoint compatibility)
        if not name.startswith("pooler.") and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)
    ]
    assert not missing, missing
    assert all(s.grad is not None for s in srcs)
