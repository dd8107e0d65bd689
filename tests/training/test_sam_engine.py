"""UniRef-SAM through the training engine (issue 7, proof 3): one step of the real ``Trainer`` changes only what
trains (spec section 12), the printed trainable / frozen table counts ``requires_grad``, exact resume, the start
from Meta's SAM weights, and the paper's two stages."""

from __future__ import annotations

import re

import pytest
import torch

from training_fixtures import vocab_size, write_vocab
from uniref import build_model_from_checkpoint
from uniref.checkpoint import save_safetensors
from uniref.modeling.sam import UniRefSAM, sam_image_stage, sam_video_stage
from uniref.training.engine import Trainer
from uniref.training.stages import StageConfig, apply_overrides, get_stage

S = 64  # SAM ViT-B at 64 px: a 4x4 embedding grid; what is tested is the plumbing
TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
# parts whose parameters receive a gradient, per task (RIS/FSS as in the image stage, VOS/RVOS with BERT frozen)
ON_PATH = {
    "ris": {"sam.mask_decoder", "text_encoder", "resizer", "fusion"},
    "fss": {"sam.mask_decoder", "mask_encoder", "fusion"},
    "vos": {"sam.mask_decoder", "mask_encoder", "fusion"},
    "rvos": {"sam.mask_decoder", "resizer", "mask_encoder", "fusion"},
}
# trainable but outside the loss in every task: SAM's IoU head (the loss is on the mask only) and BERT's pooler
NEVER_USED = ("sam.mask_decoder.iou_prediction_head.", "text_encoder.pooler.")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab"))


def sam_stage(vocab, tasks, *, text_frozen: bool, extra: list[str] | None = None) -> StageConfig:
    """The synthetic stage with a small UniRef-SAM ViT-B: 64-pixel images, one sample a batch, CPU."""
    stage = get_stage("synthetic")
    stage.datasets = [d for d in stage.datasets if d.task in tasks]
    over = ["model=sam_vit_b", f"model.img_size={S}", f"model.text.vocab_file={vocab}",
            f"model.text.vocab_size={vocab_size()}", f"freeze_text_encoder={text_frozen}", "mask_aux_loss=false",
            "num_workers=0", "device=cpu", "log_period=1", "checkpoint_period=1000"]
    over += [f"model.text.{k}={v}" for k, v in TEXT.items()]
    for d in stage.datasets:
        over += [f"datasets.{d.name}.{k}" for k in ("options.num=2", f"options.size={S}", "batch_size=1",
                                                      f"augment.short_sizes={S}", f"augment.max_size={S}")]
    return apply_overrides(stage, over + list(extra or []))


def _part(name: str) -> str:
    head, rest = name.split(".", 1)
    return f"{head}.{rest.split('.', 1)[0]}" if head == "sam" else head


def _should_train(name: str, text_frozen: bool) -> bool:
    """Spec section 12: SAM frozen except names containing mask_decoder; BERT frozen in the video stage."""
    if name.startswith("sam."):
        return "mask_decoder" in name
    return not (text_frozen and name.startswith("text_encoder."))


def _printed_table(err: str) -> dict[str, tuple[int, int, int]]:
    """``{part: (trainable, frozen, total)}`` from the report the Trainer printed."""
    rows = {}
    for line in err.splitlines():
        m = re.fullmatch(r"(\S+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", line.strip())
        if m:
            rows[m.group(1)] = tuple(int(g.replace(",", "")) for g in m.groups()[1:])
    return rows


@pytest.mark.parametrize("task, text_frozen", [("ris", False), ("fss", False), ("vos", True), ("rvos", True)])
def test_one_step_changes_only_what_trains(vocab, tmp_path, capsys, task, text_frozen):
    # RIS also recomputes BERT in the backward pass (SAM's frozen encoder keeps no activations to recompute)
    extra = ["max_iter=2", f"grad_checkpointing={task == 'ris'}"]
    trainer = Trainer(sam_stage(vocab, (task,), text_frozen=text_frozen, extra=extra), tmp_path, progress=False)
    model = trainer.model
    assert isinstance(model, UniRefSAM)
    assert trainer.checkpointed_modules == (["text_encoder"] if task == "ris" else [])
    params = dict(model.named_parameters())
    assert {n for n, p in params.items() if p.requires_grad} == {n for n in params if _should_train(n, text_frozen)}

    # the table printed at the start counts requires_grad per part, and matches the rule
    table = _printed_table(capsys.readouterr().err)
    expected: dict[str, list[int]] = {}
    for n, p in params.items():
        row = expected.setdefault(_part(n), [0, 0, 0])
        row[0 if p.requires_grad else 1] += p.numel()
        row[2] += p.numel()
    assert table == {**{k: tuple(v) for k, v in expected.items()},
                     "total": tuple(sum(v[i] for v in expected.values()) for i in range(3))}
    assert table["sam.image_encoder"][0] == table["sam.prompt_encoder"][0] == 0
    assert table["sam.mask_decoder"][1] == 0
    assert table["text_encoder"][0] == (0 if text_frozen else table["text_encoder"][2])

    # the optimiser: BERT at its absolute rate, everything else at the base rate (no UniRef++ multiplier applies)
    groups = {g["rule"]: g for g in trainer.optimizer.param_groups}
    assert set(groups) == ({"base"} if text_frozen else {"base", "text_encoder"})
    assert groups["base"]["initial_lr"] == trainer.stage.optim.base_lr and groups["base"]["weight_decay"] == 0.05
    if not text_frozen:
        assert groups["text_encoder"]["initial_lr"] == 1e-5

    with torch.no_grad():  # past the zero-initialised adaLN gate, so the attention and the mask encoder get gradients
        model.fusion.adaLN_modulation[1].weight.normal_(0, 0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train(stop_at=1)
    after = model.state_dict()
    changed = {n for n in params if not torch.equal(before[n], after[n])}
    with_grad = {n for n, p in params.items() if p.grad is not None and bool(p.grad.abs().sum() > 0)}

    assert all(p.grad is None for p in params.values() if not p.requires_grad)
    assert not {n for n in changed if not params[n].requires_grad}  # every frozen parameter is bit-identical
    assert with_grad <= changed  # every parameter that received a gradient moved
    assert all(params[n].grad is not None for n in changed)  # and nothing moved without one
    assert {_part(n) for n in with_grad} == ON_PATH[task]
    idle = {n for n, p in params.items() if p.requires_grad and p.grad is None}
    assert all(n.startswith(NEVER_USED) or _part(n) not in ON_PATH[task] for n in idle), sorted(idle)[:5]
    # among the buffers only the mask encoder's BatchNorm statistics move (when it runs)
    moved = {k for k in after if k not in params and not torch.equal(before[k], after[k])}
    assert all(k.startswith("mask_encoder.") for k in moved)


def test_resume_continues_exactly_and_exports_a_sam_model(vocab, tmp_path):
    # RVOS: language and mask references; dropout on (fusion, resizer), so resume must restore the RNG streams
    def stage(period: int):
        return sam_stage(vocab, ("rvos",), text_frozen=True, extra=["max_iter=2", f"checkpoint_period={period}",
                                                                      "keep_checkpoints=1", "optim.base_lr=1e-3"])

    full = Trainer(stage(1000), tmp_path / "full", progress=False)
    full.train()
    first = Trainer(stage(1), tmp_path / "split", progress=False)
    assert first.train(stop_at=1).iteration == 1
    del first
    resumed = Trainer(stage(1), tmp_path / "split", resume=True, progress=False)
    assert resumed.iteration == 1
    result = resumed.train()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:5]}"

    exported = build_model_from_checkpoint(result.final_weights)
    assert isinstance(exported, UniRefSAM) and exported.config.img_size == S
    for k, v in exported.state_dict().items():
        assert torch.equal(v, b[k]), k


def test_starts_from_meta_sam_and_a_uniref_text_encoder(vocab, tmp_path):
    extra = ["max_iter=1"]
    torch.manual_seed(1)
    state = UniRefSAM(sam_stage(vocab, ("ris",), text_frozen=False, extra=extra).model_config()).state_dict()
    # Meta's layout: image_encoder.* / prompt_encoder.* / mask_decoder.*; a UniRef++ file: text_encoder.*, resizer.*
    torch.save({k.removeprefix("sam."): v for k, v in state.items() if k.startswith("sam.")}, tmp_path / "sam.pth")
    save_safetensors({k: v for k, v in state.items() if k.startswith(("text_encoder.", "resizer."))},
                     tmp_path / "uniref.safetensors")

    stage = sam_stage(vocab, ("ris",), text_frozen=False, extra=extra + [
        f"init_weights={tmp_path / 'sam.pth'}", f"init_text_weights={tmp_path / 'uniref.safetensors'}"])
    trainer = Trainer(stage, tmp_path / "run", progress=False)
    loaded = trainer.model.state_dict()
    from_files = [k for k in state if k.startswith(("sam.", "text_encoder.", "resizer."))]
    assert all(torch.equal(loaded[k], state[k]) for k in from_files)
    for part in ("mask_encoder.", "fusion."):  # not in either file: a fresh initialisation (another seed)
        assert not all(torch.equal(loaded[k], v) for k, v in state.items() if k.startswith(part)), part

    missing = apply_overrides(stage, [f"init_text_weights={tmp_path / 'absent.safetensors'}"])
    with pytest.raises(FileNotFoundError, match="init_text_weights not found"):
        Trainer(missing, tmp_path / "missing", progress=False)


def test_paper_stages_and_errors_before_training(vocab, tmp_path):
    image, video = get_stage("sam_image"), get_stage("sam_video")
    assert (image.model, video.model) == ("sam_vit_h", "sam_vit_h")
    assert {d.name: d.ratio for d in image.datasets} == {"refcoco-mixed": 1.0, "fss1000": 0.05}
    assert {d.name: d.ratio for d in video.datasets} == {d.name: d.ratio for d in get_stage("video_vos_rvos").datasets}
    for stage, lr, frozen in ((image, 2e-4, False), (video, 1e-4, True)):
        o = stage.optim
        assert (o.base_lr, o.steps, stage.max_iter, stage.freeze_text_encoder) == (lr, (75_000,), 90_000, frozen)
        assert (o.text_encoder_lr, o.weight_decay, o.clip_norm) == (1e-5, 0.05, 0.1)
        assert not stage.mask_aux_loss
    assert (image.optim.base_lr, video.optim.base_lr) == (sam_image_stage().base_lr, sam_video_stage().base_lr)

    # files are checked before anything is built: Meta's SAM weights first, then the data
    with pytest.raises(FileNotFoundError, match="sam_vit_h_4b8939.pth"):
        Trainer(apply_overrides(image, [f"data_root={tmp_path}"]), tmp_path / "out", progress=False)
    weights = tmp_path / "sam.pth"
    weights.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="refcoco"):
        Trainer(apply_overrides(image, [f"data_root={tmp_path}", f"init_weights={weights}"]), tmp_path / "out",
                progress=False)
    # what UniRef-SAM cannot train is refused by the config
    with pytest.raises(ValueError, match="detection"):
        apply_overrides(get_stage("image_ris"), ["model=sam_vit_b"]).validate()
    with pytest.raises(ValueError, match="mask_aux_loss"):
        apply_overrides(video, ["mask_aux_loss=true"]).validate()
    with pytest.raises(ValueError, match="UniRef-SAM models only"):
        apply_overrides(get_stage("image_ris"), [f"init_text_weights={weights}"]).validate()
