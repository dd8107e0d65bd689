"""Named stage configs, key=value overrides and their round trip through JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uniref.training.stages import apply_overrides, available_stages, get_stage, stage_from_dict


def test_official_stage_hyperparameters():
    assert {"image_ris", "image_ris_fss", "video_vos_rvos", "finetune", "synthetic"} <= set(available_stages())
    a = get_stage("image_ris")
    assert a.optim.base_lr == 2e-4 and a.max_iter == 90000 and a.optim.steps == (75000,)
    assert [(d.task, d.ratio, d.batch_size) for d in a.datasets] == [("det", 1.0, 2), ("ris", 1.0, 2)]
    assert a.datasets[1].augment.short_sizes == tuple(range(480, 801, 32)) and a.datasets[1].augment.max_size == 1333
    assert a.model_config().with_mask_ref is False and a.optim.clip_norm == 0.1 and a.optim.weight_decay == 0.05
    b = get_stage("image_ris_fss")
    assert b.optim.base_lr == 2e-5 and b.max_iter == 30000 and b.optim.steps == ()
    assert [d.ratio for d in b.datasets] == [1.0, 1.0, 0.05]
    assert b.datasets[2].augment.short_sizes == (320, 352, 392, 416, 448, 480, 512, 544, 576, 608, 640)
    assert b.datasets[2].augment.max_size == 768
    v = get_stage("video_vos_rvos")
    assert v.freeze_text_encoder and v.mask_aux_loss and v.optim.base_lr == 1e-4
    ratios = {d.name: d.ratio for d in v.datasets}
    total = sum(ratios.values())
    assert [round(r / total, 2) for r in ratios.values()] == [0.2, 0.15, 0.1, 0.05, 0.25, 0.25]
    ref = {d.name: d for d in v.datasets}
    assert ref["refytvos"].mask_ref_prob == 0.6 and ref["video-refcoco-mixed"].mask_ref_prob == 0.0
    assert all(d.sampling_range == 10 and d.augment.crop_per_frame and not d.augment.crop_pre_sizes
               for d in v.datasets)
    assert ref["video-refcoco-mixed"].augment.max_size == 1333 and ref["ytbvos19"].augment.max_size == 768
    assert get_stage("finetune").init_mode == "strict"


def test_overrides_are_typed_and_nested():
    s = apply_overrides(get_stage("video_vos_rvos"), [
        "optim.base_lr=3e-5", "optim.steps=100,200", "max_iter=1e3", "bf16=true", "datasets.lvos.ratio=0",
        "datasets.refytvos.options.split=train", "datasets.ovis.augment.short_sizes=320,352",
        "model.num_queries=100", "model.text.freeze=yes", "data_root=/data",
    ])
    assert s.optim.base_lr == 3e-5 and s.optim.steps == (100, 200) and s.max_iter == 1000 and s.bf16 is True
    ds = {d.name: d for d in s.datasets}
    assert ds["lvos"].ratio == 0.0 and ds["ovis"].augment.short_sizes == (320, 352)
    model = s.model_config()
    assert model.num_queries == 100 and model.text.freeze is True
    assert get_stage("video_vos_rvos").max_iter == 90000  # the named config is untouched
    with pytest.raises(ValueError, match="bf16: expected true/false"):
        apply_overrides(s, ["bf16=maybe"])
    with pytest.raises(ValueError, match="is a group"):
        apply_overrides(s, ["optim=3"])
    with pytest.raises(ValueError, match="not key=value"):
        apply_overrides(s, ["max_iter"])


def test_json_round_trip(tmp_path):
    from uniref.training.engine import resolve_stage

    s = apply_overrides(get_stage("image_ris_fss"), ["optim.steps=5", "datasets.fss1000.ratio=0.5"])
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(s.to_dict()))
    again = resolve_stage(str(path), ["max_iter=7"])
    assert again.to_dict() == {**s.to_dict(), "max_iter": 7}
    assert stage_from_dict(s.to_dict()) == s


def test_validation_errors():
    s = get_stage("synthetic")
    with pytest.raises(ValueError, match="unknown task"):
        apply_overrides(s, ["datasets.synthetic-ris.task=seg"]).validate()
    with pytest.raises(ValueError, match="with_mask_ref=False"):
        apply_overrides(s, ["model.with_mask_ref=false"]).validate()
    with pytest.raises(ValueError, match="loss_normalizer"):
        apply_overrides(s, ["loss_normalizer=both"]).validate()


def test_demo_stage_trains_all_four_tasks_on_the_training_world_only():
    from uniref.data.synthetic.world import HELD_OUT_SEED
    from uniref.training.sources import build_sources, dataset_entries

    stage = get_stage("demo")
    stage.validate()
    assert stage.model == "demo" and stage.mask_aux_loss
    assert sorted(d.task for d in stage.datasets) == ["fss", "ris", "rvos", "vos"]
    assert all(d.kind == "world" and d.options["seed"] < HELD_OUT_SEED for d in stage.datasets)
    assert stage.optim.backbone_multiplier == 1.0  # nothing visual is pretrained
    sources = build_sources(stage)
    assert [len(s) for s in sources] == [d.options["num"] for d in stage.datasets]
    sample = sources[0].builder(3, np.random.default_rng(0))
    assert sample.image.shape[-1] == 3 and sample.expression  # an RIS sample with its sentence
    assert sample.masks.shape[0] == 1 and sample.masks.any()
    held_out = apply_overrides(get_stage("demo"), [f"datasets.world-vos.options.seed={HELD_OUT_SEED}"])
    with pytest.raises(ValueError, match="reserved for held-out evaluation"):
        dataset_entries(held_out.datasets[2])
