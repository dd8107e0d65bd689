"""Named training configurations: the paper's stages (spec 10.4) and its two UniRef-SAM stages (spec 12),
fine-tuning, and a synthetic smoke run.

A :class:`StageConfig` holds everything a run needs. ``get_stage(name)`` returns a fresh copy of a named
one; :func:`apply_overrides` changes it with ``key=value`` strings such as ``optim.base_lr=1e-4``,
``datasets.refytvos.root=/data/refytvos``, ``model.num_queries=100`` or ``model.text.freeze=true``.
An unknown key is an error naming it and the keys that exist at that level.

A relative dataset root is taken from the working directory when it exists there, else under ``data_root``
(default ``datasets``, the official layout: ``datasets/coco``, ``datasets/refcoco``, ...).

Batch sizes are per process (the official ``DATASET_BS`` = 2); the global batch is ``batch_size x processes``.
The official runs use 16 GPUs; their single-node recipes (8 GPUs) double the iterations and steps
(stage 1a/2: 180k iterations, step 150k; stage 1b: 60k) — override ``max_iter`` and ``optim.steps``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from uniref.configs import ModelConfig, TextConfig, get_config
from uniref.training.transforms import (
    FSS_SHORT_SIZES,
    IMAGE_SHORT_SIZES,
    VIDEO_REFCOCO_SHORT_SIZES,
    VIDEO_SHORT_SIZES,
    AugmentConfig,
)

__all__ = [
    "DatasetConfig",
    "OptimConfig",
    "EvalConfig",
    "StageConfig",
    "available_stages",
    "get_stage",
    "apply_overrides",
    "stage_from_dict",
]


@dataclass
class DatasetConfig:
    """One dataset of the mixture.

    Attributes:
        name: unique label (used in overrides, logs and error messages).
        kind: the reader: coco, coco-json, refcoco, refcoco-mixed, fss1000, ytvos, lvos, mose, davis, refytvos,
            ovis (ytvis-json), davis-folders or synthetic.
        task: det, ris, fss, vos or rvos.
        root: folder (or file) of the data; a relative path that does not exist is looked up under ``data_root``.
        ratio: sampling weight.
        batch_size: samples per batch on each process.
        mask_ref_prob: RVOS only, the probability that a batch also gets the frame-0 mask reference
            (Ref-YouTube-VOS 0.6 = language only with probability 0.4; video-RefCOCO 0.0).
        sampling_range: VOS/RVOS, the largest distance between the two frames.
        options: reader-specific keyword arguments (split, year, images, annotations, num, size, ...).
        augment: the augmentation.
    """

    name: str
    kind: str
    task: str
    root: str = ""
    ratio: float = 1.0
    batch_size: int = 2
    mask_ref_prob: float = 1.0
    sampling_range: int = 10
    options: dict = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    """AdamW, parameter groups, clipping and the warm-up multi-step schedule (spec 10.4)."""

    base_lr: float = 2e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    backbone_multiplier: float = 0.1
    linear_proj_multiplier: float = 0.1
    text_encoder_lr: float = 1e-5
    clip_norm: float = 0.1
    warmup_iters: int = 200
    warmup_factor: float = 1.0
    steps: tuple[int, ...] = (75000,)
    gamma: float = 0.1


@dataclass
class EvalConfig:
    """A validation benchmark run every ``StageConfig.eval_period`` iterations with ``uniref.evaluation``
    (``evals.add=BENCHMARK:ROOT[:SPLIT]`` on the command line)."""

    benchmark: str
    root: str
    split: str = ""  # "" = the benchmark's default (paper) split
    limit: int = 0  # 0 = everything


@dataclass
class StageConfig:
    """A training run.

    Attributes:
        name: the stage name.
        model: the model config name (``r50``, ``swinl``, ``tiny``, ...); model_overrides: its field changes.
        init_weights: checkpoint to start from (an official ``.pth`` or our ``.safetensors``; for UniRef-SAM also
            Meta's plain SAM checkpoint); "" = random init.
        init_mode: "strict" (every key must match: fine-tuning) or "partial" (load the tensors that fit and
            report the rest: a new head or a new reference encoder, as between the official stages).
        init_text_weights: UniRef-SAM only, with Meta's plain SAM checkpoint as ``init_weights``: a UniRef++
            checkpoint whose text encoder and resizer are loaded.
        datasets: the mixture.
        data_root: base folder of relative dataset roots that do not exist as given.
        max_iter: iterations to train.
        checkpoint_period, keep_checkpoints: write a checkpoint every N iterations, keep the last K.
        eval_period, evals: periodic validation (0 = never).
        log_period: iterations between log lines.
        seed: the run seed (data, augmentation, initialisation).
        freeze_text_encoder: the video stage keeps BERT fixed (in eval mode, so without dropout).
        mask_aux_loss: the video stage's auxiliary mask terms (``MASK_AUX_LOSS``).
        loss_normalizer: "local" (official: each process divides by its own matched-query count) or "global"
            (the count summed over processes, so the run equals one process with the combined batch).
        bn_eval: keep the mask encoder's BatchNorm in eval mode (running statistics, frozen).
        bf16: autocast the forward pass to bfloat16.
        grad_checkpointing: recompute backbone blocks and transformer layers in the backward pass.
        allow_tf32: TF32 matmuls on GPUs (the official setting).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        num_workers: data loader processes (0 = load in the training process).
    """

    name: str
    model: str = "r50"
    model_overrides: dict = field(default_factory=dict)
    init_weights: str = ""
    init_mode: str = "partial"
    init_text_weights: str = ""
    datasets: list[DatasetConfig] = field(default_factory=list)
    data_root: str = "datasets"
    max_iter: int = 90000
    checkpoint_period: int = 2500
    keep_checkpoints: int = 3
    eval_period: int = 0
    evals: list[EvalConfig] = field(default_factory=list)
    log_period: int = 20
    seed: int = 42
    optim: OptimConfig = field(default_factory=OptimConfig)
    freeze_text_encoder: bool = False
    mask_aux_loss: bool = False
    loss_normalizer: str = "local"
    bn_eval: bool = False
    bf16: bool = False
    grad_checkpointing: bool = False
    allow_tf32: bool = True
    device: str = "auto"
    num_workers: int = 4

    def model_config(self) -> ModelConfig:
        """The model config with the overrides applied (text fields may be a nested dict)."""
        return get_config(self.model, **copy.deepcopy(self.model_overrides))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Errors a run would otherwise meet later; raised before anything is built."""
        from uniref.training.samples import TASKS

        if self.init_mode not in ("strict", "partial"):
            raise ValueError(f"init_mode must be 'strict' or 'partial', got {self.init_mode!r}")
        if self.loss_normalizer not in ("local", "global"):
            raise ValueError(f"loss_normalizer must be 'local' or 'global', got {self.loss_normalizer!r}")
        if self.max_iter < 1 or self.checkpoint_period < 1 or self.log_period < 1:
            raise ValueError("max_iter, checkpoint_period and log_period must be >= 1")
        if not self.datasets:
            raise ValueError(f"stage {self.name!r} has no dataset")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        model = self.model_config()
        for d in self.datasets:
            if d.task not in TASKS:
                raise ValueError(f"dataset {d.name}: unknown task {d.task!r}; known tasks: {', '.join(TASKS)}")
            if d.task in ("ris", "rvos") and not model.with_lang_ref:
                raise ValueError(f"dataset {d.name} ({d.task}) needs a text encoder but model {model.name} has "
                                 "with_lang_ref=False")
            if d.task in ("fss", "vos") or (d.task == "rvos" and d.mask_ref_prob > 0):
                if not model.with_mask_ref:
                    raise ValueError(f"dataset {d.name} ({d.task}) needs the mask encoder but model {model.name} "
                                     "has with_mask_ref=False")
            if d.ratio < 0 or d.batch_size < 1:
                raise ValueError(f"dataset {d.name}: ratio must be >= 0 and batch_size >= 1")
            if not 0.0 <= d.mask_ref_prob <= 1.0:
                raise ValueError(f"dataset {d.name}: mask_ref_prob must lie in [0, 1]")
        if sum(d.ratio for d in self.datasets) <= 0:
            raise ValueError("at least one dataset needs a positive ratio")
        if not isinstance(model, ModelConfig):  # a UniRefSamConfig
            self._validate_sam()
        elif self.init_text_weights:
            raise ValueError("init_text_weights applies to UniRef-SAM models only (sam_vit_b, sam_vit_l, sam_vit_h)")
        if self.name == "finetune" and not self.init_weights:
            raise ValueError("the finetune stage starts from a checkpoint: set init_weights=PATH")

    def _validate_sam(self) -> None:
        """UniRef-SAM predicts one mask per sample from its reference, with its own loss (spec section 12)."""
        for d in self.datasets:
            if d.task == "det":
                raise ValueError(f"dataset {d.name}: UniRef-SAM does not train detection (task det); every sample "
                                 "needs a sentence or a mask reference")
        if self.mask_aux_loss or self.loss_normalizer != "local":
            raise ValueError("mask_aux_loss and loss_normalizer=global belong to UniRef++'s set criterion; "
                             "UniRef-SAM's loss is 2 x BCE + 0.5 x dice averaged over each batch: leave them at "
                             "false / local")
        if self.init_text_weights and not self.init_weights:
            raise ValueError("init_text_weights is loaded on top of Meta's SAM weights: set init_weights=PATH too")


# ------------------------------------------------------------------------------------------ named stages


def _image_augment() -> AugmentConfig:
    return AugmentConfig(IMAGE_SHORT_SIZES, 1333, crop_pre_sizes=(400, 500, 600))


def _fss_augment() -> AugmentConfig:
    return AugmentConfig(FSS_SHORT_SIZES, 768, crop_pre_sizes=(400, 500, 600))


def _video_augment(sizes: tuple[int, ...] = VIDEO_SHORT_SIZES, max_size: int = 768) -> AugmentConfig:
    # per-frame crop without the pre-resize, resize and flip once per clip
    return AugmentConfig(sizes, max_size, crop_pre_sizes=(), crop_per_frame=True)


_COCO = {"annotations": "annotations/instances_train2017.json", "images": "train2017"}


def _image_ris() -> StageConfig:
    """Stage 1a: COCO detection + RefCOCO-mixed RIS, from the Objects365 checkpoint (heads re-initialised)."""
    return StageConfig(
        name="image_ris", model="r50", model_overrides={"with_mask_ref": False}, init_mode="partial",
        datasets=[
            DatasetConfig("coco", "coco", "det", "coco", 1.0, 2, options=dict(_COCO), augment=_image_augment()),
            DatasetConfig("refcoco-mixed", "refcoco-mixed", "ris", "refcoco", 1.0, 2, augment=_image_augment()),
        ],
        max_iter=90000, optim=OptimConfig(base_lr=2e-4, steps=(75000,)),
    )


def _image_ris_fss() -> StageConfig:
    """Stage 1b: + FSS-1000 (ratio 0.05), the mask encoder added, lr 2e-5, no decay step."""
    return StageConfig(
        name="image_ris_fss", model="r50", init_mode="partial",
        datasets=[
            DatasetConfig("coco", "coco", "det", "coco", 1.0, 2, options=dict(_COCO), augment=_image_augment()),
            DatasetConfig("refcoco-mixed", "refcoco-mixed", "ris", "refcoco", 1.0, 2, augment=_image_augment()),
            DatasetConfig("fss1000", "fss1000", "fss", "fss-1000", 0.05, 2, options={"split": "train"},
                          augment=_fss_augment()),
        ],
        max_iter=30000, optim=OptimConfig(base_lr=2e-5, steps=()),
    )


def _video_vos_rvos() -> StageConfig:
    """Stage 2: VOS + RVOS on images-as-clips and videos; BERT frozen; the auxiliary mask losses on."""
    return StageConfig(
        name="video_vos_rvos", model="r50", init_mode="partial", freeze_text_encoder=True, mask_aux_loss=True,
        datasets=[
            DatasetConfig("video-coco", "coco", "vos", "coco", 0.8, 2, options=dict(_COCO), augment=_video_augment()),
            DatasetConfig("ytbvos19", "ytvos", "vos", "ytbvos19", 0.6, 2, options={"split": "train", "year": 2019},
                          augment=_video_augment()),
            DatasetConfig("lvos", "lvos", "vos", "lvos", 0.4, 2, options={"split": "train"}, augment=_video_augment()),
            DatasetConfig("ovis", "ovis", "vos", "ovis", 0.2, 2, augment=_video_augment()),
            DatasetConfig("video-refcoco-mixed", "refcoco-mixed", "rvos", "refcoco", 1.0, 2, mask_ref_prob=0.0,
                          augment=_video_augment(VIDEO_REFCOCO_SHORT_SIZES, 1333)),
            DatasetConfig("refytvos", "refytvos", "rvos", "ref-youtube-vos", 1.0, 2, mask_ref_prob=0.6,
                          options={"split": "train"}, augment=_video_augment()),
        ],
        max_iter=90000, optim=OptimConfig(base_lr=1e-4, steps=(75000,)),
    )


def _finetune() -> StageConfig:
    """Fine-tune a released checkpoint on custom data (COCO-style JSON or DAVIS-style folders), one machine."""
    return StageConfig(
        name="finetune", model="r50", init_mode="strict",
        datasets=[DatasetConfig("custom", "coco-json", "ris", "", 1.0, 2, augment=_image_augment())],
        max_iter=2000, checkpoint_period=500, log_period=10,
        optim=OptimConfig(base_lr=2e-5, steps=(), warmup_iters=50, warmup_factor=0.01),
    )


def _synthetic() -> StageConfig:
    """A smoke run on generated shapes with the tiny model: all four tasks, 64-pixel images, CPU-friendly."""
    small = dict(short_sizes=(64,), max_size=96, crop_prob=0.0)
    return StageConfig(
        name="synthetic", model="tiny", init_mode="partial",
        datasets=[
            DatasetConfig(f"synthetic-{task}", "synthetic", task, "", 1.0, 2, options={"num": 8, "size": 64},
                          augment=AugmentConfig(**small))
            for task in ("ris", "fss", "vos", "rvos")
        ],
        max_iter=200, checkpoint_period=100, log_period=10, mask_aux_loss=True, num_workers=0, device="cpu",
        optim=OptimConfig(base_lr=1e-4, steps=(), warmup_iters=0),
    )


def _demo() -> StageConfig:
    """The bundled demo model: the ``demo`` config trained from scratch on the synthetic world, all four tasks
    at once (``uniref train demo --out runs/demo``, about 1 h 50 min on two CPU cores; its
    ``model_final.safetensors`` becomes the shipped file through ``uniref.demo.weights.export_demo_weights``).

    Nothing visual is pretrained, so the backbone learns at the full rate; the MiniLM text encoder stays
    frozen (``model.text.freeze``). Batches are small and CPU-sized; the world's training seeds lie below
    :data:`~uniref.data.synthetic.world.HELD_OUT_SEED`, so the demo's held-out world is never seen.
    """
    from uniref.data.synthetic.training import demo_augment

    mix = (("ris", 1.0), ("fss", 0.6), ("vos", 1.0), ("rvos", 1.0))
    return StageConfig(
        name="demo", model="demo", init_mode="partial", mask_aux_loss=True,
        datasets=[DatasetConfig(f"world-{task}", "world", task, "", ratio, 4, mask_ref_prob=0.5,
                                sampling_range=6, options={"num": 20000, "seed": 0}, augment=demo_augment())
                  for task, ratio in mix],
        max_iter=15000, checkpoint_period=1000, keep_checkpoints=20, log_period=10, seed=0, num_workers=1,
        device="auto",
        optim=OptimConfig(base_lr=2e-4, backbone_multiplier=1.0, clip_norm=1.0, warmup_iters=100,
                          warmup_factor=0.01, steps=(12000,)),
    )


# where the official UniRef-SAM code reads Meta's SAM weights (a hard-coded path; MODEL.WEIGHTS is "")
_SAM_WEIGHTS = "pretrained_models/sam_vit_h_4b8939.pth"


def _sam_stage(kind: str) -> StageConfig:
    """A UniRef-SAM stage (spec section 12): the numbers of ``uniref.modeling.sam.sam_{kind}_stage()`` on the
    dataset entries (readers, roots, augmentation) of the UniRef++ stage with the same data.

    Like the official runs it starts from Meta's ViT-H SAM (``init_weights``, strictly loaded); BERT starts from
    ``model.text.pretrained_dir`` or, with ``init_text_weights=PATH``, from a UniRef++ checkpoint.
    """
    from uniref.modeling.sam.training import engine_stage_fields, sam_image_stage, sam_video_stage

    fields = engine_stage_fields(sam_image_stage() if kind == "image" else sam_video_stage())
    ratios = fields["datasets"]
    datasets = [d for d in get_stage(fields["base_stage"]).datasets if d.name in ratios]
    for d in datasets:
        d.ratio = ratios[d.name]
    return StageConfig(
        name=fields["name"], model=fields["model"], init_weights=_SAM_WEIGHTS, datasets=datasets,
        max_iter=fields["max_iter"], freeze_text_encoder=fields["freeze_text_encoder"],
        optim=OptimConfig(**fields["optim"]),
    )


def _sam_image() -> StageConfig:
    """UniRef-SAM image stage: RefCOCO-mixed + FSS-1000 (1 : 0.05), lr 2e-4, BERT trained at 1e-5."""
    return _sam_stage("image")


def _sam_video() -> StageConfig:
    """UniRef-SAM video stage: the VOS + RVOS mixture of ``video_vos_rvos``, lr 1e-4, BERT frozen."""
    return _sam_stage("video")


_STAGES = {
    "image_ris": _image_ris,
    "image_ris_fss": _image_ris_fss,
    "video_vos_rvos": _video_vos_rvos,
    "finetune": _finetune,
    "synthetic": _synthetic,
    "demo": _demo,
    "sam_image": _sam_image,
    "sam_video": _sam_video,
}


def available_stages() -> list[str]:
    return sorted(_STAGES)


def get_stage(name: str) -> StageConfig:
    """A fresh copy of a named stage config."""
    if name not in _STAGES:
        raise ValueError(f"unknown training config {name!r}; known configs: {', '.join(available_stages())}")
    return _STAGES[name]()


# ------------------------------------------------------------------------------------------ overrides


def _parse_bool(text: str, key: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{key}: expected true/false, got {text!r}")


def _guess(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _coerce(text: str, current: Any, key: str) -> Any:
    """Parse ``text`` into the type of ``current`` (the value being replaced)."""
    try:
        if isinstance(current, bool):
            return _parse_bool(text, key)
        if isinstance(current, int):
            return int(float(text)) if "e" in text.lower() else int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, (tuple, list)):
            stripped = text.strip()
            if stripped.startswith("["):
                items = json.loads(stripped)
            else:
                items = [t for t in stripped.split(",") if t.strip()]
            elem = current[0] if current else None
            out = [_guess(i.strip()) if elem is None and isinstance(i, str)
                   else _coerce(i.strip(), elem, key) if isinstance(i, str) else i for i in items]
            return type(current)(out)
        if isinstance(current, dict):
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
        if current is None:
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return None if text.lower() in ("none", "null") else text
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad value for {key}: {text!r} ({exc})") from None
    raise ValueError(f"{key} cannot be set from the command line")


def _field_names(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def _set_model_override(cfg: StageConfig, path: list[str], text: str, key: str) -> None:
    base = get_config(cfg.model)
    if not path:
        raise ValueError(f"{key}: give a model field, e.g. model.num_queries=100 (or model=NAME for the config)")
    name = path[0]
    fields = _field_names(base)
    if name not in fields:
        raise ValueError(f"unknown config key {key!r}: model configs have no field {name!r}; known: {', '.join(fields)}")
    if name == "text":
        if len(path) != 2:
            raise ValueError(f"{key}: give a text field, e.g. model.text.freeze=true")
        text_fields = _field_names(TextConfig())
        if path[1] not in text_fields:
            raise ValueError(f"unknown config key {key!r}: the text config has no field {path[1]!r}; known: "
                             f"{', '.join(text_fields)}")
        current = cfg.model_overrides.get("text", {}).get(path[1], getattr(base.text, path[1]))
        cfg.model_overrides.setdefault("text", {})[path[1]] = _coerce(text, current, key)
        return
    if len(path) != 1:
        raise ValueError(f"unknown config key {key!r}")
    current = cfg.model_overrides.get(name, getattr(base, name))
    if dataclasses.is_dataclass(current):
        raise ValueError(f"{key} cannot be set from the command line")
    cfg.model_overrides[name] = _coerce(text, current, key)


def _set_path(obj: Any, path: list[str], text: str, key: str) -> None:
    name = path[0]
    if isinstance(obj, list):  # datasets / evals by name or position
        match = [x for x in obj if getattr(x, "name", getattr(x, "benchmark", None)) == name]
        if not match and name.isdigit() and int(name) < len(obj):
            match = [obj[int(name)]]
        if not match:
            names = [getattr(x, "name", getattr(x, "benchmark", "?")) for x in obj]
            raise ValueError(f"unknown config key {key!r}: no entry named {name!r}; entries: {', '.join(names) or 'none'}")
        if len(path) == 1:
            raise ValueError(f"{key}: give a field of {name!r}, e.g. {key}.root=PATH")
        _set_path(match[0], path[1:], text, key)
        return
    if isinstance(obj, dict):
        if len(path) == 1:
            obj[name] = _coerce(text, obj.get(name), key)
        else:
            raise ValueError(f"unknown config key {key!r}")
        return
    fields = _field_names(obj)
    if name not in fields:
        raise ValueError(f"unknown config key {key!r}: {type(obj).__name__} has no field {name!r}; known: "
                         f"{', '.join(fields)}")
    current = getattr(obj, name)
    if len(path) == 1:
        if dataclasses.is_dataclass(current) or (isinstance(current, list) and current and
                                                  dataclasses.is_dataclass(current[0])):
            raise ValueError(f"{key} is a group; set one of its fields, e.g. {key}.{_field_names(current if dataclasses.is_dataclass(current) else current[0])[0]}=...")
        setattr(obj, name, _coerce(text, current, key))
        return
    _set_path(current, path[1:], text, key)


def apply_overrides(cfg: StageConfig, overrides: list[str]) -> StageConfig:
    """Apply ``key=value`` strings to a copy of ``cfg``.

    ``model.<field>`` (and ``model.text.<field>``) change the model config; ``datasets.<name>.<field>`` and
    ``evals.<benchmark>.<field>`` address list entries by name; ``datasets.<name>.options.<key>`` sets a reader
    option. ``evals.add=BENCHMARK:ROOT[:SPLIT]`` appends a validation benchmark.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        path = key.split(".")
        if not key or any(not p for p in path):
            raise ValueError(f"override {item!r} has an empty key")
        if path[0] == "model" and len(path) > 1:
            _set_model_override(cfg, path[1:], text, key)
        elif path == ["evals", "add"]:
            parts = text.split(":")
            if len(parts) < 2:
                raise ValueError(f"{key}: expected BENCHMARK:ROOT[:SPLIT], got {text!r}")
            cfg.evals.append(EvalConfig(parts[0], parts[1], *(parts[2:3] or [])))
        else:
            _set_path(cfg, path, text, key)
    # the model overrides must form a valid model config
    cfg.model_config()
    return cfg


def stage_from_dict(data: dict) -> StageConfig:
    """Rebuild a :class:`StageConfig` from :meth:`StageConfig.to_dict` (checkpoints store it)."""
    data = copy.deepcopy(data)
    datasets = []
    for d in data.pop("datasets", []):
        augment = AugmentConfig(**d.pop("augment", {}))
        datasets.append(DatasetConfig(augment=augment, **d))
    optim = data.pop("optim", {})
    optim = OptimConfig(**{k: tuple(v) if k in ("betas", "steps") else v for k, v in optim.items()})
    evals = [EvalConfig(**e) for e in data.pop("evals", [])]
    return StageConfig(datasets=datasets, optim=optim, evals=evals, **data)
