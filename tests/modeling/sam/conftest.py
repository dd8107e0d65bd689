"""Shared, expensive-to-build UniRef-SAM models for the tests in this folder."""

import json

import pytest
import torch

from reference_data import reference_dir
from sam_test_utils import small_config
from uniref.modeling.sam import UniRefSAM, sam_vit_h


@pytest.fixture(scope="module")
def small_model() -> UniRefSAM:
    torch.manual_seed(0)
    return UniRefSAM(small_config()).eval()


@pytest.fixture(scope="session")
def vit_h_meta() -> UniRefSAM:
    """The official ViT-H variant with a BERT-base text encoder, shapes only (meta device)."""
    with torch.device("meta"):
        return UniRefSAM(sam_vit_h())


@pytest.fixture(scope="session")
def sam_manifest() -> dict:
    path = reference_dir() / "manifest-sam.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())
