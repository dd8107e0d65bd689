"""UniFusion inside the recorded full-tiny-public run: RIS (language) and VOS (first + previous mask template)."""

import pytest
import torch

from reference_data import golden, max_abs_diff
from uniref.modeling.fusion import UniFusion
from uniref.modeling.reference.features import ReferenceFeatures
from uniref.modeling.reference.mask_encoder import MaskReferenceEncoder
from uniref.modeling.reference.templates import concat_references, mask_reference
from uniref.modeling.text import FeatureResizer, build_text_encoder, language_reference

# Downstream of the bf16 fusion attention (README section 7). Measured on the reference machine:
# reference kernel 0.0 everywhere, SDPA <= 3e-4.
TOL = 1e-3
PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def _fusion(fused: bool) -> UniFusion:
    fusion = UniFusion(fused_attention=fused).eval()
    fusion.load_state_dict(golden("full-tiny-public").weights_under("detr.fusion_module."), strict=True)
    return fusion


def _max_diff(outs, name: str) -> float:
    full = golden("full-tiny-public")
    return max(max_abs_diff(o, full.out(f"{name}.{l}")) for l, o in enumerate(outs))


@pytest.mark.parametrize("fused", [False, True], ids=["reference_kernel", "sdpa"])
def test_ris_language_fusion(fused):
    full = golden("full-tiny-public")
    srcs = [full.out(f"ris.call0.fusion.srcs_in.{l}") for l in range(4)]
    lang = ReferenceFeatures(
        [full.out("ris.lang.refs")], [full.out("ris.lang.refs")], [full.out("ris.lang.masks")],
        [full.out("ris.lang.ref_embeds")],
    )
    with torch.no_grad():
        out = _fusion(fused)(srcs, lang=lang)
    assert _max_diff(out, "outputs.ris.call0.fusion.srcs_out") <= TOL


def test_ris_from_token_ids():
    """Text encoder + resizer + fusion chained from the recorded token ids."""
    full = golden("full-tiny-public")
    bert = build_text_encoder(full.meta["tiny_bert_config"]).eval()
    bert.load_state_dict(full.weights_under("text_encoder."), strict=True)
    resizer = FeatureResizer(128, 256).eval()
    resizer.load_state_dict(full.weights_under("resizer."), strict=True)
    srcs = [full.out(f"ris.call0.fusion.srcs_in.{l}") for l in range(4)]
    with torch.no_grad():
        lang = language_reference(bert, resizer, full.inputs["ris.input_ids"], full.inputs["ris.attention_mask"])
        out = _fusion(False)(srcs, lang=lang)
    assert _max_diff(out, "outputs.ris.call0.fusion.srcs_out") <= 1e-3


@pytest.mark.parametrize("fused", [False, True], ids=["reference_kernel", "sdpa"])
def test_vos_first_frame_mask_fusion(fused):
    """Frame 0, object 1: init = prev = its GT template; the query frame is the reference frame."""
    full = golden("full-tiny-public")
    frame = full.inputs["vos.frames_preprocessed"][0].float()
    image = torch.zeros(1, 3, 160, 192)
    image[0, :, : frame.shape[1], : frame.shape[2]] = (frame - PIXEL_MEAN) / PIXEL_STD
    srcs = [full.out(f"vos.ref_backbone0.srcs.{l}") for l in range(4)]
    masks = [full.out(f"vos.ref_backbone0.masks.{l}") for l in range(4)]
    encoder = MaskReferenceEncoder().eval()
    encoder.load_state_dict(full.weights_under("value_encoder."), strict=True)
    with torch.no_grad():
        template = mask_reference(encoder, image, full.out("vos.template0.input_mask"), srcs, masks)
        ref = concat_references(template, template)
        out = _fusion(fused)(srcs, mask=ref)
    assert ref.refs[0].shape == (1, 2 * 480, 256)
    assert _max_diff(out, "outputs.vos.call0.fusion.srcs_out") <= TOL
