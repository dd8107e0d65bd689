"""The training engine: exact resume, checkpoint contents, non-finite losses, errors before training starts."""

from __future__ import annotations

import json

import pytest
import torch

from training_fixtures import model_overrides, tiny_stage, vocab_size, write_vocab
from uniref import build_model
from uniref.checkpoint import CheckpointError, save_safetensors
from uniref.training.engine import NonFiniteLossError, Trainer, read_training_checkpoint
from uniref.training.stages import apply_overrides, get_stage


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def tiny_weights(vocab, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(build_model("tiny", num_queries=10, text={"vocab_file": str(vocab),
                                                                "vocab_size": vocab_size()}).state_dict(), path)
    return path


def _mixture(vocab, **extra):
    # RIS + FSS with dropout on (fusion, BERT, resizer) and train-mode BatchNorm: resume must restore RNG and
    # buffers, not only weights
    over = [f"{k}={v}" for k, v in extra.items()]
    stage = tiny_stage(vocab, ("ris", "fss"), extra=["checkpoint_period=2", "optim.base_lr=1e-3"] + over)
    stage.model_overrides.pop("fusion_dropout")
    stage.model_overrides["text"].pop("hidden_dropout_prob")
    return stage


def test_resume_continues_exactly(vocab, tmp_path):
    full = Trainer(_mixture(vocab, max_iter=4), tmp_path / "full", progress=False)
    full.train()
    # stop after 2 of 4 iterations, then a fresh Trainer resumes from the checkpoint on disk
    first = Trainer(_mixture(vocab, max_iter=4), tmp_path / "split", progress=False)
    result = first.train(stop_at=2)
    assert result.iteration == 2 and result.final_weights is None
    assert (tmp_path / "split" / "last_checkpoint").read_text().strip() == "model_0000002.pt"
    del first
    resumed = Trainer(_mixture(vocab, max_iter=4), tmp_path / "split", resume=True, progress=False)
    assert resumed.iteration == 2
    resumed.train()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:5]}"
    # the run really trained (and the BatchNorm statistics moved)
    init = build_model("tiny", num_queries=10, text={"vocab_file": str(vocab), "vocab_size": vocab_size()})
    assert not torch.equal(init.state_dict()["transformer.level_embed"], a["transformer.level_embed"])
    assert int(a["mask_encoder.bn1.num_batches_tracked"]) > 0
    losses_full = [json.loads(x)["loss"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    losses_split = [json.loads(x)["loss"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert losses_full == losses_split


def test_checkpoint_contents_and_final_weights(vocab, tmp_path):
    stage = tiny_stage(vocab, ("vos",), extra=["max_iter=2", "checkpoint_period=1", "keep_checkpoints=1",
                                               "num_workers=1", "eval_period=2"])
    calls = []

    def evaluator(model, iteration):
        calls.append((iteration, model.training))
        return {"score": 0.5}

    result = Trainer(stage, tmp_path, progress=False, evaluator=evaluator).train()
    assert calls == [(2, False)]  # in eval mode, at the period
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert log[-1] == {"iteration": 2, "eval/score": 0.5} and log[0]["iteration"] == 1 and "loss_dice" in log[0]
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == ["model_0000002.pt"]  # pruned to the last one
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary file
    ckpt = read_training_checkpoint(tmp_path / "model_0000002.pt")
    assert ckpt["iteration"] == 2 and ckpt["world_size"] == 1 and ckpt["sampler"]["iteration"] == 2
    assert set(ckpt["rng"][0]) == {"python", "numpy", "torch"}
    assert ckpt["config"]["name"] == "synthetic" and ckpt["model_config"]["num_queries"] == 10
    assert len(ckpt["optimizer"]["state"]) > 0
    from uniref import build_model_from_checkpoint

    model = build_model_from_checkpoint(result.final_weights)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    assert (tmp_path / "tensorboard.txt").exists() or (tmp_path / "tensorboard").is_dir()


def test_non_finite_loss_names_the_batch_and_keeps_the_last_checkpoint(vocab, tmp_path, monkeypatch):
    stage = tiny_stage(vocab, ("ris",), extra=["max_iter=4", "checkpoint_period=1"])
    trainer = Trainer(stage, tmp_path, progress=False)
    original = type(trainer.train_model).forward
    calls = {"n": 0}

    def poisoned(self, batch):
        out = original(self, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(type(trainer.train_model), "forward", poisoned)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train()
    message = str(err.value)
    assert "iteration 2" in message and "synthetic-ris" in message and "synthetic-ris-" in message
    assert "model_0000001.pt" in message
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000001.pt"
    ckpt = read_training_checkpoint(tmp_path / "model_0000001.pt")
    for k, v in trainer.model.state_dict().items():  # no optimiser step was taken on the bad batch
        before = ckpt["model"][k]
        assert torch.equal(v, before), k


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_config_keys_are_named():
    stage = get_stage("synthetic")
    with pytest.raises(ValueError, match="optim.bogus"):
        apply_overrides(stage, ["optim.bogus=1"])
    with pytest.raises(ValueError, match="model.nonsense"):
        apply_overrides(stage, ["model.nonsense=3"])
    with pytest.raises(ValueError, match="no entry named 'nope'"):
        apply_overrides(stage, ["datasets.nope.root=/x"])
    with pytest.raises(ValueError, match="max_iter"):
        apply_overrides(stage, ["max_iter=many"])
    with pytest.raises(ValueError, match="unknown training config"):
        get_stage("stage9")


def test_cli_reports_one_line_and_exit_code_2(capsys, monkeypatch):
    import uniref.cli as cli
    from uniref.training.commands import register

    monkeypatch.setattr(cli, "_extra_commands", lambda: [register])  # only the train subcommand
    assert cli.main(["train", "synthetic", "bogus_key=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus_key" in err[0] and err[0].startswith("uniref train: error:")


def test_cli_takes_overrides_after_options(capsys, monkeypatch):
    import uniref.cli as cli
    from uniref.training.commands import register

    monkeypatch.setattr(cli, "_extra_commands", lambda: [register])
    # the override is read (and rejected by name), not refused by the argument parser
    assert cli.main(["train", "synthetic", "--no-progress", "bogus_key=1"]) == 2
    assert "bogus_key" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a stray word that is no key=value is still an argument error
        cli.main(["train", "synthetic", "--no-progress", "stray"])


def test_missing_dataset_path_fails_before_training(vocab, tiny_weights, tmp_path):
    stage = apply_overrides(get_stage("finetune"), model_overrides(vocab) + [
        f"init_weights={tiny_weights}", f"datasets.custom.root={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="dataset custom: path does not exist: .*nowhere"):
        Trainer(stage, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_dataset_fails_before_training(vocab, tiny_weights, tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    stage = apply_overrides(get_stage("finetune"), model_overrides(vocab) + [
        f"init_weights={tiny_weights}", f"datasets.custom.root={data}"])
    with pytest.raises(ValueError, match=r"dataset custom at .*data has no ris samples"):
        Trainer(stage, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="finetune stage starts from a checkpoint"):
        Trainer(apply_overrides(get_stage("finetune"), [f"datasets.custom.root={data}"]), tmp_path / "o2")


def test_checkpoint_from_another_config_fails_before_training(vocab, tmp_path):
    other = build_model("tiny", num_queries=20, dim_feedforward=128,
                        text={"vocab_file": str(vocab), "vocab_size": vocab_size()})
    weights = tmp_path / "other.safetensors"
    save_safetensors(other.state_dict(), weights)
    for mode in ("strict", "partial"):
        stage = tiny_stage(vocab, ("ris",), extra=[f"init_weights={weights}", f"init_mode={mode}"])
        with pytest.raises(CheckpointError, match="does not match the model|another model config") as err:
            Trainer(stage, tmp_path / f"out_{mode}", progress=False)
        assert "query_embed.weight" in str(err.value) or "transformer." in str(err.value)
    # resuming a run with another model config
    run = tmp_path / "run"
    Trainer(tiny_stage(vocab, ("ris",), extra=["max_iter=1"]), run, progress=False).train()
    with pytest.raises(CheckpointError, match="another model config: num_queries"):
        Trainer(tiny_stage(vocab, ("ris",), extra=["max_iter=2", "model.num_queries=12"]), run, resume=True,
                progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        Trainer(tiny_stage(vocab, ("ris",)), tmp_path / "empty", resume=True, progress=False)


def test_partial_init_accepts_a_new_class_head_and_new_modules(vocab, tmp_path):
    """The official stage transitions: 365 -> 1 classes, text/mask encoders that the file lacks."""
    source = build_model("tiny", num_queries=10, num_classes=3, with_lang_ref=False, with_mask_ref=False)
    weights = tmp_path / "stage0.safetensors"
    save_safetensors(source.state_dict(), weights)
    stage = tiny_stage(vocab, ("ris",), extra=[f"init_weights={weights}", "init_mode=partial", "max_iter=1"])
    trainer = Trainer(stage, tmp_path / "out", progress=False)
    own = trainer.model.state_dict()
    assert torch.equal(own["transformer.level_embed"], source.state_dict()["transformer.level_embed"])
    assert own["class_embed.0.weight"].shape[0] == 1


def test_configured_evaluation_runs_the_evaluation_package(vocab, tmp_path, monkeypatch):
    import types

    import uniref.evaluation.runner as runner
    from uniref import build_model_from_checkpoint
    from uniref.evaluation.tables import MetricsTable

    seen = []

    def fake_evaluate(benchmark, data, weights, **kw):
        model = build_model_from_checkpoint(weights)  # the weights written for the evaluator load
        seen.append((benchmark, str(data), kw["split"], kw["limit"], model.config.num_queries))
        return types.SimpleNamespace(table=MetricsTable(benchmark, rows=[{"split": "val", "J&F": 12.5, "videos": 3}]))

    monkeypatch.setattr(runner, "evaluate", fake_evaluate)
    data = tmp_path / "davis"
    data.mkdir()
    stage = tiny_stage(vocab, ("vos",), extra=["max_iter=1", "eval_period=1", f"evals.add=davis17:{data}:val"])
    Trainer(stage, tmp_path / "run", progress=False).train()
    assert seen == [("davis17", str(data), "val", None, 10)]
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last == {"iteration": 1, "eval/davis17/val/J&F": 12.5, "eval/davis17/val/videos": 3.0}
    bad = tiny_stage(vocab, ("vos",), extra=["eval_period=1", f"evals.add=davis99:{data}"])
    with pytest.raises(ValueError, match="unknown benchmark 'davis99'"):
        Trainer(bad, tmp_path / "run2", progress=False)
