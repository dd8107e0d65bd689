"""State-dict layout equals the official one (``manifest-r50.json`` / ``manifest-swinl.json``)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

from reference_data import reference_dir
from uniref.checkpoint import ALIAS_PREFIXES, from_official_state_dict, to_official_state_dict
from uniref.configs import get_config
from uniref.modeling.uniref import UniRef

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _meta_model(name: str) -> UniRef:
    with torch.device("meta"):
        return UniRef(get_config(name))


@pytest.mark.parametrize("config,manifest", [("r50", "manifest-r50.json"), ("swinl", "manifest-swinl.json")])
def test_state_dict_matches_official_manifest(config, manifest):
    entries = json.loads((reference_dir() / manifest).read_text())["entries"]
    model = _meta_model(config)
    official = to_official_state_dict(model.state_dict())
    expected = {e["name"]: e for e in entries}
    assert sorted(set(official) - set(expected)) == [], "names we produce that the official model lacks"
    assert sorted(set(expected) - set(official)) == [], "official names we do not produce"
    persistent = set(model.state_dict())
    buffers = {n for n, _ in model.named_buffers() if n in persistent}
    bad = []
    for name, e in expected.items():
        t = official[name]
        if list(t.shape) != e["shape"]:
            bad.append(f"{name}: shape {list(t.shape)} vs {e['shape']}")
        if e["dtype"] in _DTYPES and t.dtype != _DTYPES[e["dtype"]]:
            bad.append(f"{name}: dtype {t.dtype} vs {e['dtype']}")
    assert not bad, "\n".join(bad[:20])
    # FrozenBN statistics, BN running stats, Swin index tables are buffers exactly where the official ones are
    ours_buffer = {_official(b) for b in buffers} | {"criterion._iter"}
    official_buffer = {n for n, e in expected.items() if e["is_buffer"]}
    assert ours_buffer == official_buffer
    # aliases: every alias entry of the manifest is one of the two duplicated head lists
    pairs = {(e["name"], e["alias_of"]) for e in entries if e.get("alias_of")}
    assert len(pairs) == 56
    for name, target in pairs:
        assert any(
            {name, target} == {alias + rest, primary + rest}
            for alias, primary in ALIAS_PREFIXES
            for rest in [name.split("_embed.", 1)[1]]
        ), (name, target)


def _official(name: str) -> str:
    from uniref.checkpoint import ours_to_official

    return ours_to_official(name)


@pytest.mark.parametrize("config,manifest", [("r50", "manifest-r50.json"), ("swinl", "manifest-swinl.json")])
def test_parameter_totals_match_manifest(config, manifest):
    data = json.loads((reference_dir() / manifest).read_text())
    model = _meta_model(config)
    assert sum(p.numel() for p in model.parameters()) == data["total_parameters_unique_module_parameters"]
    per_prefix: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        per_prefix[_official(name).split(".")[0]] += p.numel()
    for prefix, totals in data["totals_by_top_level_prefix"].items():
        if totals["params"]:
            # the official per-prefix totals count the aliased head lists twice
            dup = sum(
                e["numel"] for e in data["entries"] if e.get("alias_of") and e["name"].startswith(prefix + ".")
            )
            assert per_prefix[prefix] + dup == totals["params"], prefix


def test_official_names_round_trip():
    model = _meta_model("r50")
    ours = model.state_dict()
    back, problems = from_official_state_dict(to_official_state_dict(ours))
    assert not problems
    assert set(back) == set(ours)
