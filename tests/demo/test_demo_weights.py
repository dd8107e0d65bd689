"""Demo weights: exported without the text encoder in float16, hash-checked, loaded strictly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from uniref.checkpoint import CheckpointError
from uniref.demo.weights import DEMO_WEIGHTS, TRAIN_COMMAND, build_demo_model, load_demo_weights


def test_export_roundtrip(random_demo):
    model, path, digest = random_demo
    stored = load_file(str(path))
    assert not any(k.startswith("text_encoder.") for k in stored)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest
    loaded = build_demo_model(path, sha256=digest)
    ref, new = model.state_dict(), loaded.state_dict()
    for key in ("query_embed.weight", "mask_encoder.fuser3.block1.conv1.weight", "text_encoder.pooler.dense.weight"):
        torch.testing.assert_close(new[key], ref[key].half().float() if not key.startswith("text") else ref[key])


def test_missing_weights_name_the_file_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        build_demo_model(tmp_path / "nothing.safetensors")
    message = str(info.value).splitlines()[0]
    assert "nothing.safetensors" in message and TRAIN_COMMAND in message
    if not DEMO_WEIGHTS.is_file():
        with pytest.raises(FileNotFoundError, match="demo.safetensors"):
            build_demo_model()


def test_corrupt_or_foreign_files_are_refused(random_demo, tmp_path):
    model, path, digest = random_demo
    with pytest.raises(CheckpointError, match="expected"):
        load_demo_weights(model, path, sha256="0" * 64)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes())
    (tmp_path / "bad.safetensors.sha256").write_text("f" * 64 + "  bad.safetensors\n")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_demo_weights(model, bad)
    state = load_file(str(path))
    state.pop("query_embed.weight")
    state["extra.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    with pytest.raises(CheckpointError, match="missing .*query_embed.weight"):
        load_demo_weights(model, partial)
