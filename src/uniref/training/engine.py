"""The training loop: one process or ``torchrun`` (DDP), checkpoints, exact resume, logging, evaluation.

Launch::

    uniref train CONFIG [key=value ...] [--out DIR] [--resume]
    torchrun --nproc_per_node 8 -m uniref.cli train CONFIG ...          (one node)
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m uniref.cli train CONFIG ...

Under ``torchrun`` the process group is created from the environment (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``): NCCL when the run uses CUDA, gloo on CPU. Each process draws its own batches (a process
may train RIS while another trains FSS in the same iteration, as in the official runs).

Checkpoints (``OUT/model_XXXXXXX.pt``, written atomically by rank 0, the newest named in
``OUT/last_checkpoint``) hold the model, optimiser, scheduler, iteration, the RNG states of every process
(python, numpy, torch, CUDA) and the stage config. ``--resume`` continues from the newest one and gives the
same weights as an uninterrupted run (the batches are a pure function of the seed, the rank and the
iteration). The final weights are also written as ``OUT/model_final.safetensors`` with the model config,
loadable with ``uniref.build_model_from_checkpoint``.

The stage's model config picks the family that is trained (:mod:`uniref.training.families`): UniRef++, or
UniRef-SAM (SAM frozen except its mask decoder; its table of trainable and frozen parameters is printed at the
start).

A non-finite loss (or gradient norm) stops the run before the optimiser step, naming the dataset and the
sample ids of the offending batch on every process; the last checkpoint on disk is the last good state.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from uniref.checkpoint import CheckpointError, LoadReport, load_checkpoint, save_safetensors
from uniref.training.families import model_family
from uniref.training.optim import build_optimizer, build_scheduler, clip_gradients
from uniref.training.sampler import MultiDatasetSampler
from uniref.training.sources import BatchFactory, DataSource, build_sources
from uniref.training.stages import StageConfig, apply_overrides, get_stage, stage_from_dict
from uniref.training.step import set_train_mode

__all__ = [
    "DistInfo",
    "NonFiniteLossError",
    "Trainer",
    "TrainResult",
    "init_distributed",
    "load_initial_weights",
    "read_training_checkpoint",
    "resolve_stage",
    "run_training",
    "main",
]

CHECKPOINT_FORMAT = "uniref-train"
LAST_CHECKPOINT = "last_checkpoint"


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the message names the batches."""


@dataclass
class DistInfo:
    """Where this process stands in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device=cuda was asked for but CUDA is not available")
        return torch.device("cuda", local_rank if preference == "cuda" else torch.device(preference).index)
    return torch.device(preference)


def init_distributed(device: str = "auto") -> DistInfo:
    """Read the torchrun environment, pick the device and create the process group when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    info = DistInfo(rank, local_rank, world, dev)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        info.initialized_here = True
    return info


# ------------------------------------------------------------------------------------------ checkpoints


def read_training_checkpoint(path: str | os.PathLike) -> dict | None:
    """Our training checkpoint (a dict with ``format == "uniref-train"``), or None for any other file."""
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        return None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return obj if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT else None


def _class_head(name: str) -> bool:
    return name.startswith("class_embed.")


def load_initial_weights(model: nn.Module, path: str | os.PathLike, mode: str) -> LoadReport:
    """Load the starting weights of a stage.

    ``strict``: every tensor must match (fine-tuning a released checkpoint). ``partial``: modules the file
    lacks keep their initialisation and only the class heads may differ in shape (the official stage
    transitions: 365 -> 1 classes, the new text/mask encoders); anything else that differs means the file
    belongs to another config and is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_weights not found: {path}")
    train = read_training_checkpoint(path)
    if train is None:
        report = load_checkpoint(model, path, strict=(mode == "strict"))
    else:
        report = _load_our_state(model, train["model"], strict=(mode == "strict"), path=path)
    if mode == "partial":
        bad = [m for m in report.mismatched if not _class_head(m.split(":")[0].replace("detr.detr.", ""))]
        loaded = len(model.state_dict()) - len(report.missing) - len(report.mismatched)
        if bad or loaded <= 0:
            raise CheckpointError(
                f"{path} was written for another model config ({len(bad)} tensors differ in shape, "
                f"{max(loaded, 0)} fit):\n" + report.format(path)
            )
    return report


def _load_our_state(model: nn.Module, state: dict, *, strict: bool, path: Path) -> LoadReport:
    own = model.state_dict()
    report = LoadReport()
    usable = {}
    for k in own:
        if k not in state and not k.endswith("position_ids"):
            report.missing.append(k)
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            usable[k] = v
    if strict and not report.ok:
        raise CheckpointError(report.format(path))
    model.load_state_dict(usable, strict=False)
    return report


def _rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = {**np_state["state"], "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _atomic_torch_save(obj: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_differences(va, vb, f"{prefix}{k}.")
        elif (list(va) if isinstance(va, tuple) else va) != (list(vb) if isinstance(vb, tuple) else vb):
            out.append(f"{prefix}{k}: {vb!r} in the checkpoint, {va!r} now")
    return out


# ------------------------------------------------------------------------------------------ the trainer


@dataclass
class TrainResult:
    iteration: int
    last_loss: float
    checkpoint: Path | None
    final_weights: Path | None


def _identity(x):
    return x


class Trainer:
    """Builds everything a stage needs (and checks it) in the constructor; :meth:`train` runs the loop.

    Args:
        stage: the run config.
        out_dir: where checkpoints and logs go.
        resume: continue from ``out_dir/last_checkpoint``.
        evaluator: ``(model, iteration) -> {metric: value}``, run every ``eval_period`` iterations on rank 0
            (on every process when it has ``collective = True``); by default ``stage.evals`` through
            ``uniref.evaluation.runner.evaluate`` on the current weights, the work split over the processes.
        progress: show a progress bar on rank 0.
        dist_info: the process's place in the run (default: from the environment).
        sources: prebuilt data sources (tests); by default opened from ``stage.datasets``.
    """

    def __init__(self, stage: StageConfig, out_dir: str | os.PathLike, *, resume: bool = False,
                 evaluator: Callable[[nn.Module, int], dict] | None = None, progress: bool = True,
                 dist_info: DistInfo | None = None, sources: list[DataSource] | None = None):
        stage.validate()
        self.out_dir = Path(out_dir)
        resume_state = self._find_resume(resume)
        if resume_state is not None:
            self._check_resume_config(stage, resume_state)
        for key in ("init_weights", "init_text_weights"):
            start = getattr(stage, key)
            if start and resume_state is None and not Path(start).is_file():
                raise FileNotFoundError(f"{key} not found: {start}")
        self.stage = stage
        self.sources = sources if sources is not None else build_sources(stage)
        self.dist = dist_info or init_distributed(stage.device)
        self.device = self.dist.device
        if self.device.type == "cuda" and stage.allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.evaluator = evaluator if evaluator is not None else self._config_evaluator()
        self.progress = progress

        torch.manual_seed(stage.seed)
        self.model_config = stage.model_config()
        # UniRef++ or UniRef-SAM: the network, what it freezes, how it starts, the module computing the loss
        self.family = model_family(self.model_config)
        model = self.family.build(self.model_config)
        self.family.freeze(model, text_frozen=self._text_frozen)
        self._print_parameter_report(model)
        if resume_state is None:
            self._initial_weights(model)
        # identical initialisation everywhere; from here on each process has its own random stream (dropout)
        torch.manual_seed(stage.seed + self.dist.rank)
        random.seed(stage.seed + self.dist.rank)
        np.random.seed((stage.seed + self.dist.rank) % 2**32)
        self.checkpointed_modules = self.family.gradient_checkpointing(model) if stage.grad_checkpointing else []
        model.to(self.device)
        self.model = model
        self.train_model = self.family.training_module(model, stage, text_frozen=self._text_frozen)
        self.ddp_model: nn.Module = self.train_model
        if self.dist.distributed:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # each process may run a task that skips some module
            )
        self.optimizer = build_optimizer(model, stage.optim)
        self.scheduler = build_scheduler(self.optimizer, stage.optim)
        self.iteration = 0
        self._rng_to_restore = None
        if resume_state is not None:
            self._restore(resume_state)
        self.tokenizer = self._tokenizer()
        self.sampler = MultiDatasetSampler(
            [len(s) for s in self.sources], [s.config.ratio for s in self.sources],
            [s.config.batch_size for s in self.sources], seed=stage.seed, rank=self.dist.rank,
            world_size=self.dist.world_size, start_iteration=self.iteration,
        )
        self.factory = BatchFactory(self.sources, self.tokenizer, self.model_config.text.context_length)
        self.last_checkpoint: Path | None = None
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ setup helpers
    @property
    def _text_frozen(self) -> bool:
        return self.model_config.with_lang_ref and (self.stage.freeze_text_encoder or self.model_config.text.freeze)

    def _initial_weights(self, model: nn.Module) -> None:
        text_dir = self.model_config.text.pretrained_dir
        if text_dir:
            _load_pretrained_bert(model.text_encoder, text_dir)
        if self.stage.init_weights:
            report = self.family.load_initial_weights(model, self.stage.init_weights, self.stage.init_mode,
                                                      text_weights=self.stage.init_text_weights)
            if not report.ok and self.dist.is_main:
                print(f"[uniref train] partial init from {self.stage.init_weights}: {len(report.missing)} missing, "
                      f"{len(report.unexpected)} unexpected, {len(report.mismatched)} re-initialised (shape)",
                      file=sys.stderr)

    def _print_parameter_report(self, model: nn.Module) -> None:
        """The family's trainable / frozen parameter table, on rank 0 (stderr), before anything is loaded."""
        report = self.family.parameter_report(model)
        if report and self.dist.is_main:
            print(f"[uniref train] {self.model_config.name} parameters:\n{report}", file=sys.stderr)

    def _tokenizer(self):
        if not any(s.config.task in ("ris", "rvos") for s in self.sources):
            return None
        from uniref.modeling.text.tokenizer import build_tokenizer

        text = self.model_config.text
        return build_tokenizer(text.vocab_file, vocab_size=text.vocab_size)

    def _config_evaluator(self):
        """The evaluation package on ``stage.evals``; run by every process (the runner splits the work)."""
        if not self.stage.evals or self.stage.eval_period <= 0:
            return None
        try:
            from uniref.evaluation.runner import evaluate
        except ImportError:
            raise ValueError("periodic evaluation needs the uniref.evaluation package, which this installation "
                             "lacks; remove evals or set eval_period=0") from None
        from uniref.evaluation.benchmarks import get_benchmark

        for e in self.stage.evals:
            get_benchmark(e.benchmark)  # an unknown name fails now, not after hours of training
            if not Path(e.root).exists():
                raise FileNotFoundError(f"evaluation data for {e.benchmark} not found: {e.root}")
        evals = list(self.stage.evals)

        def run(model: nn.Module, iteration: int) -> dict:
            folder = self.out_dir / "eval" / f"{iteration:07d}"
            weights = folder / "weights.safetensors"
            if self.dist.is_main:
                meta = {"uniref_config": json.dumps(self.model_config.to_dict()), "format": "uniref"}
                save_safetensors(model.state_dict(), weights, metadata=meta)
            if self.dist.distributed:
                dist.barrier()
            metrics: dict[str, float] = {}
            for e in evals:
                result = evaluate(e.benchmark, e.root, weights, split=e.split or None, limit=e.limit or None,
                                  out=folder / e.benchmark, device=str(self.device), progress=False)
                table = result.table
                for row in table.rows + ([{"split": "mean", **table.mean}] if table.mean else []):
                    split = row.get("split", "")
                    metrics.update({f"{e.benchmark}/{split}/{k}": float(v) for k, v in row.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
            return metrics

        run.collective = True  # type: ignore[attr-defined]
        return run

    def _find_resume(self, resume: bool) -> dict | None:
        if not resume:
            return None
        pointer = self.out_dir / LAST_CHECKPOINT
        if not pointer.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from in {self.out_dir} "
                                    f"({LAST_CHECKPOINT} is missing)")
        path = self.out_dir / pointer.read_text().strip()
        state = read_training_checkpoint(path)
        if state is None:
            raise CheckpointError(f"--resume: {path} is not a uniref training checkpoint")
        state["_path"] = str(path)
        return state

    def _check_resume_config(self, stage: StageConfig, state: dict) -> None:
        diffs = _config_differences(stage.model_config().to_dict(), state["model_config"])
        if diffs:
            raise CheckpointError(f"checkpoint {state['_path']} was written for another model config: "
                                  + "; ".join(diffs))

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = int(state["iteration"])
        rng = state.get("rng") or []
        if state.get("world_size") == self.dist.world_size and len(rng) == self.dist.world_size:
            self._rng_to_restore = rng[self.dist.rank]
        else:
            warnings.warn(f"resuming with {self.dist.world_size} processes from a checkpoint written by "
                          f"{state.get('world_size')}: data order and random states restart from the seed",
                          stacklevel=2)
        self.last_checkpoint = Path(state["_path"])

    # ------------------------------------------------------------------ modes
    def _train_mode(self) -> None:
        set_train_mode(self.model, frozen_text_encoder=self._text_frozen, bn_eval=self.stage.bn_eval)

    # ------------------------------------------------------------------ checkpointing
    def save_checkpoint(self) -> Path | None:
        """Write the state at ``self.iteration`` (every rank must call; rank 0 writes)."""
        rng = _rng_state(self.device)
        if self.dist.distributed:
            gathered: list = [None] * self.dist.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        path = self.out_dir / f"model_{self.iteration:07d}.pt"
        if self.dist.is_main:
            state = {
                "format": CHECKPOINT_FORMAT, "version": 1, "iteration": self.iteration,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "sampler": {**self.sampler.state_dict(),
                                                                      # data-loader workers run ahead of training:
                                                                      # the position is what was consumed
                                                                      "iteration": self.iteration},
                "rng": gathered, "world_size": self.dist.world_size, "config": self.stage.to_dict(),
                "model_config": self.model_config.to_dict(),
            }
            _atomic_torch_save(state, path)
            _atomic_write_text(self.out_dir / LAST_CHECKPOINT, path.name + "\n")
            self._prune()
        if self.dist.distributed:
            dist.barrier()
        self.last_checkpoint = path
        return path

    def _prune(self) -> None:
        keep = max(self.stage.keep_checkpoints, 1)
        files = sorted(self.out_dir.glob("model_*.pt"))
        for old in files[:-keep]:
            old.unlink(missing_ok=True)

    def export_weights(self) -> Path | None:
        """``OUT/model_final.safetensors`` with the model config (rank 0)."""
        if not self.dist.is_main:
            return None
        path = self.out_dir / "model_final.safetensors"
        meta = {"uniref_config": json.dumps(self.model_config.to_dict()), "format": "uniref",
                "iteration": str(self.iteration), "stage": self.stage.name}
        save_safetensors(self.model.state_dict(), path, metadata=meta)
        return path

    # ------------------------------------------------------------------ the loop
    def _loader(self):
        start = self.iteration
        self.sampler.seek(start)
        workers = self.stage.num_workers
        loader = torch.utils.data.DataLoader(
            self.factory, batch_size=None, sampler=self.sampler, num_workers=workers, collate_fn=_identity,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=2 if workers > 0 else None,
            # entries hold closures (lazy loaders), which fork shares and spawn could not pickle
            multiprocessing_context="fork" if workers > 0 and "fork" in mp.get_all_start_methods() else None,
            # a private generator: creating the iterator must not consume the global torch RNG (exact resume)
            generator=torch.Generator().manual_seed(self.stage.seed),
        )
        return iter(loader)

    def train_step(self, batch) -> dict:
        """Forward, checks, backward, clipping and the optimiser/scheduler step on one batch."""
        batch = batch.to(self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.stage.bf16):
            out = self.ddp_model(batch)
        self._check_finite(out.loss, batch, "loss", out.terms)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        norm = clip_gradients(self.model.parameters(), self.stage.optim.clip_norm)
        self._check_finite(torch.tensor(norm), batch, "gradient norm", out.terms)
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        return {"loss": float(out.loss.detach()), "grad_norm": norm, "terms": out.terms,
                "dataset": batch.dataset, "num_matched": out.num_matched}

    def _check_finite(self, value: torch.Tensor, batch, what: str, terms: dict) -> None:
        bad = torch.tensor([0.0 if bool(torch.isfinite(value.detach()).all()) else 1.0], device=self.device)
        if self.dist.distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() == 0:
            return
        mine = {"rank": self.dist.rank, "dataset": batch.dataset, "samples": list(batch.sample_ids),
                "finite": bool(torch.isfinite(value.detach()).all()),
                "bad_terms": sorted(k for k, v in terms.items() if not math.isfinite(v))}
        everyone = [mine]
        if self.dist.distributed:
            everyone = [None] * self.dist.world_size
            dist.all_gather_object(everyone, mine)
        culprits = [e for e in everyone if not e["finite"]] or everyone
        desc = "; ".join(f"rank {e['rank']}: dataset {e['dataset']}, samples {e['samples']}"
                         + (f", terms {e['bad_terms']}" if e["bad_terms"] else "") for e in culprits)
        keep = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else ""
        raise NonFiniteLossError(f"non-finite {what} at iteration {self.iteration + 1}: {desc}{keep}")

    def _mean_across(self, value: float) -> float:
        if not self.dist.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.dist.world_size

    def train(self, stop_at: int | None = None) -> TrainResult:
        """Train until ``max_iter`` (or ``stop_at``, to simulate an interruption); returns the last state."""
        stage = self.stage
        end = min(stage.max_iter, stop_at) if stop_at is not None else stage.max_iter
        logger = _Logger(self.out_dir, enabled=self.dist.is_main) if self.dist.is_main else None
        bar = None
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=stage.max_iter, initial=self.iteration, desc=f"train {stage.name}", dynamic_ncols=True)
        batches = self._loader()
        if self._rng_to_restore is not None:
            _set_rng_state(self._rng_to_restore, self.device)
            self._rng_to_restore = None
        self._train_mode()
        last = float("nan")
        try:
            while self.iteration < end:
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                info = self.train_step(batch)
                last = info["loss"]
                if self.iteration % stage.log_period == 0 or self.iteration == end:
                    mean_loss = self._mean_across(last)
                    if logger is not None:
                        logger.write({"iteration": self.iteration, "loss": mean_loss, "lr": self.scheduler.get_last_lr()[0],
                                      "grad_norm": info["grad_norm"], "dataset": info["dataset"],
                                      "time": time.perf_counter() - t0, "data_time": t1 - t0, **info["terms"]})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last:.3f}", data=info["dataset"])
                if self.iteration % stage.checkpoint_period == 0 or self.iteration == stage.max_iter:
                    self.save_checkpoint()
                if self.evaluator is not None and stage.eval_period > 0 and self.iteration % stage.eval_period == 0:
                    self._evaluate(logger)
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        final = self.export_weights() if self.iteration >= stage.max_iter else None
        return TrainResult(self.iteration, last, self.last_checkpoint, final)

    def _evaluate(self, logger) -> None:
        collective = getattr(self.evaluator, "collective", False)
        metrics: dict = {}
        if collective or self.dist.is_main:
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = self.evaluator(self.model, self.iteration)
            finally:
                self._train_mode()
            if logger is not None:
                logger.write({"iteration": self.iteration, **{f"eval/{k}": v for k, v in metrics.items()}})
        if self.dist.distributed:
            dist.barrier()


def _load_pretrained_bert(text_encoder: nn.Module, folder: str) -> None:
    """Start BERT from a local folder holding a saved ``BertModel`` (never a hub download)."""
    from transformers import BertModel

    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"model.text.pretrained_dir not found: {path}")
    pretrained = BertModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=True)
    missing, unexpected = text_encoder.load_state_dict(pretrained.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise CheckpointError(f"{path} does not fit the text encoder: missing {missing[:5]}")


class _Logger:
    """JSON lines on disk and, when the tensorboard package is installed, TensorBoard scalars."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        except (ImportError, ModuleNotFoundError):
            note = out_dir / "tensorboard.txt"
            if not note.exists():
                note.write_text("tensorboard is not installed: TensorBoard scalars were skipped "
                                "(metrics.jsonl has every logged value)\n")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            step = int(record["iteration"])
            for k, v in record.items():
                if k != "iteration" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


# ------------------------------------------------------------------------------------------ entry points


def resolve_stage(config: str, overrides: list[str]) -> StageConfig:
    """A named stage, or a JSON file written by :meth:`StageConfig.to_dict`, with ``key=value`` overrides."""
    path = Path(config)
    if config.endswith(".json"):
        if not path.is_file():
            raise FileNotFoundError(f"training config file not found: {path}")
        base = stage_from_dict(json.loads(path.read_text()))
    else:
        base = get_stage(config)
    return apply_overrides(base, overrides)


def run_training(config: str, overrides: list[str], out_dir: str | None, *, resume: bool = False,
                 progress: bool = True) -> TrainResult:
    """What ``uniref train`` does: resolve the config, build and check everything, train."""
    stage = resolve_stage(config, overrides)
    out = Path(out_dir or os.path.join("output", stage.name))
    dist_info = init_distributed(stage.device)
    try:
        trainer = Trainer(stage, out, resume=resume, progress=progress, dist_info=dist_info)
        if dist_info.is_main:
            (out / "config.json").write_text(json.dumps(stage.to_dict(), indent=2))
        return trainer.train()
    finally:
        if dist_info.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """``python -m uniref.training.engine CONFIG [key=value ...] [--out DIR] [--resume]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="uniref-train")
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    result = run_training(args.config, args.overrides, args.out, resume=args.resume, progress=not args.no_progress)
    print(f"trained to iteration {result.iteration}; last loss {result.last_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

