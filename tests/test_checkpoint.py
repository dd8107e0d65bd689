"""Strict loading of official and our checkpoints, conversion, and the readable failure report."""

from __future__ import annotations

import pytest
import torch

from uniref import CheckpointError, build_model, build_model_from_checkpoint, load_checkpoint
from uniref.checkpoint import file_sha256, to_official_state_dict
from uniref.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny")


@pytest.fixture(scope="module")
def official_state(tiny):
    state = {k: v.clone() for k, v in to_official_state_dict(tiny.state_dict()).items()}
    # some transformers versions save the constant position ids; official checkpoints may hold them
    state["text_encoder.embeddings.position_ids"] = torch.arange(512)[None]
    return state


def _fresh():
    torch.manual_seed(1)
    return build_model("tiny")


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("wrap", ["raw", "model", "ddp"])
def test_official_pth_loads_strictly(tmp_path, tiny, official_state, wrap):
    state = official_state
    if wrap == "ddp":
        state = {"module." + k: v for k, v in state.items()}
    obj = {"model": state, "iteration": 5} if wrap != "raw" else state
    path = tmp_path / "official.pth"
    torch.save(obj, path)
    model = _fresh()
    report = load_checkpoint(model, path)
    assert report.ok
    _assert_same(model, tiny)


def test_missing_unexpected_and_mismatched_keys_are_reported(tmp_path, official_state):
    state = dict(official_state)
    del state["detr.controller.layers.0.weight"]
    state["detr.detr.not_a_layer.weight"] = torch.zeros(3)
    state["detr.detr.query_embed.weight"] = torch.zeros(7, 256)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_fresh(), path)
    text = str(err.value)
    assert "missing from the checkpoint (1)" in text and "detr.controller.layers.0.weight" in text
    assert "detr.detr.not_a_layer.weight" in text
    assert "detr.detr.query_embed.weight: checkpoint (7, 256) vs model (10, 256)" in text
    # non-strict loading keeps what fits and returns the same report
    model = _fresh()
    report = load_checkpoint(model, path, strict=False)
    assert not report.ok and len(report.mismatched) == 1
    assert torch.equal(model.state_dict()["controller.layers.1.weight"], official_state["detr.controller.layers.1.weight"])


def test_alias_that_differs_from_its_primary_is_refused(tmp_path, official_state):
    state = dict(official_state)
    key = "detr.detr.transformer.decoder.class_embed.0.bias"
    state[key] = state[key] + 1
    path = tmp_path / "alias.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="alias"):
        load_checkpoint(_fresh(), path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "junk.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_checkpoint(_fresh(), path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(_fresh(), tmp_path / "nope.pth")


def test_convert_cli_round_trip_and_hash(tmp_path, tiny, official_state, capsys):
    src = tmp_path / "official.pth"
    torch.save({"model": official_state}, src)
    dst = tmp_path / "tiny.safetensors"
    assert cli_main(["convert", str(src), str(dst), "--config", "tiny"]) == 0
    printed = capsys.readouterr().out
    digest = file_sha256(dst)
    assert digest in printed
    assert (tmp_path / "tiny.safetensors.sha256").read_text().split()[0] == digest
    model = build_model_from_checkpoint(dst)
    _assert_same(model, tiny)
    # refusing to overwrite, one error line, non-zero exit
    assert cli_main(["convert", str(src), str(dst), "--config", "tiny"]) == 2
    assert "exists" in capsys.readouterr().err
    # a corrupted file fails its hash check, naming the file
    data = bytearray(dst.read_bytes())
    data[-1] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        build_model("tiny", weights=dst)


def test_convert_with_wrong_config_fails_cleanly(tmp_path, official_state, capsys):
    src = tmp_path / "official.pth"
    torch.save(official_state, src)
    dst = tmp_path / "out.safetensors"
    code = cli_main(["convert", str(src), str(dst), "--config", "tiny", "--overwrite"])
    assert code == 0
    bad = dict(official_state)
    bad.pop("detr.detr.query_embed.weight")
    torch.save(bad, src)
    dst2 = tmp_path / "out2.safetensors"
    assert cli_main(["convert", str(src), str(dst2), "--config", "tiny"]) == 2
    assert "does not match the model" in capsys.readouterr().err
    assert not dst2.exists()


def test_unknown_config_lists_known_ones():
    with pytest.raises(ValueError, match="known configs: .*r50.*swinl.*tiny"):
        build_model("r51")
