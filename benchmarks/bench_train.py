"""Training throughput and peak memory of the tiny config on small generated images, fp32 vs bf16 autocast.

    PYTHONPATH=src python benchmarks/bench_train.py [--size 96] [--steps 10] [--tasks ris vos] [--device cpu]

For each task: iterations per second of full training steps (forward, matching, losses, backward, clipping,
AdamW) on pre-built batches (data loading excluded), the variants interleaved step by step in this process
and summarised by the median step time (robust to a shared machine), and peak memory. On CUDA the memory is the allocator's peak above the level before the timed steps. On CPU a
process cannot forget memory it already touched, so each variant's memory is measured in a fresh child
process: the peak resident-set growth over the first training steps (activations, gradients and the AdamW
state), sampled every 2 ms. bf16 numbers are printed as ratios against fp32.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import threading
import time

import torch

from uniref.training.engine import DistInfo, Trainer
from uniref.training.stages import apply_overrides, get_stage


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Peak RSS growth above the level at start, sampled in a thread (CPU runs)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self):
        self.base = _rss_bytes()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def _trainer(task: str, args, *, bf16: bool, checkpointing: bool):
    stage = get_stage("synthetic")
    stage.datasets = [d for d in stage.datasets if d.task == task]
    name = stage.datasets[0].name
    stage = apply_overrides(stage, [
        "model.num_queries=10", f"device={args.device}", "num_workers=0", f"bf16={bf16}",
        f"grad_checkpointing={checkpointing}", f"datasets.{name}.options.size={args.size}",
        f"datasets.{name}.augment.short_sizes={args.size}", f"datasets.{name}.augment.max_size={args.size}",
        f"datasets.{name}.batch_size={args.batch}", f"datasets.{name}.options.num={max(args.batch * 2, 4)}",
    ])
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    trainer = Trainer(stage, args.out, progress=False, dist_info=DistInfo(device=device))
    batches = iter(trainer._loader())
    data = [next(batches) for _ in range(args.warmup + args.steps)]
    trainer._train_mode()
    return trainer, data, device


def time_variants(task: str, args, variants) -> dict[str, tuple[float, float | None]]:
    """Median iterations per second of each variant, interleaved step by step so that a busy machine slows
    every variant alike; CUDA peak memory per variant (None on CPU)."""
    runs = {}
    for label, bf16, ckpt in variants:
        trainer, data, device = _trainer(task, args, bf16=bf16, checkpointing=ckpt)
        for b in data[: args.warmup]:
            trainer.train_step(b)
        runs[label] = (trainer, data[args.warmup:], device)
    times: dict[str, list[float]] = {label: [] for label in runs}
    peaks: dict[str, float | None] = {label: None for label in runs}
    for step in range(args.steps):
        for label, (trainer, data, device) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            trainer.train_step(data[step])
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                peaks[label] = max(peaks[label] or 0.0, peak)
            times[label].append(time.perf_counter() - start)
    del runs
    gc.collect()
    return {label: (1.0 / statistics.median(t), peaks[label]) for label, t in times.items()}


def child_memory(task: str, args, *, bf16: bool, checkpointing: bool) -> float:
    """Peak RSS growth (MiB) over the first training steps of a fresh process (CPU)."""
    trainer, data, _ = _trainer(task, args, bf16=bf16, checkpointing=checkpointing)
    gc.collect()
    with _PeakRSS() as rss:
        for b in data[: max(args.warmup, 2)]:
            trainer.train_step(b)
    return rss.peak / 2**20


def _memory_in_child(task: str, args, bf16: bool, ckpt: bool) -> float:
    import subprocess
    import sys

    cmd = [sys.executable, __file__, "--child-memory", task, str(int(bf16)), str(int(ckpt)), "--size", str(args.size),
           "--batch", str(args.batch), "--warmup", str(args.warmup), "--threads", str(args.threads), "--out", args.out]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    return float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=2, help="samples per batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=["ris", "vos"], choices=["ris", "fss", "vos", "rvos"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true", help="also time gradient checkpointing (fp32)")
    parser.add_argument("--out", default="/tmp/uniref_bench_train")
    parser.add_argument("--child-memory", nargs=3, metavar=("TASK", "BF16", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_memory:
        task, bf16, ckpt = args.child_memory
        args.device = "cpu"
        print(child_memory(task, args, bf16=bool(int(bf16)), checkpointing=bool(int(ckpt))))
        return
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"tiny config, {args.size}x{args.size} images, batch {args.batch}, {args.steps} timed steps, {where}")
    memory_note = "allocator peak" if args.device == "cuda" else "peak RSS growth, fresh process"
    print(f"memory: {memory_note}")
    print(f"{'task':<6}{'variant':<16}{'it/s':>8}{'peak MiB':>10}{'speed vs fp32':>15}{'memory vs fp32':>16}")
    for task in args.tasks:
        variants = [("fp32", False, False), ("bf16 autocast", True, False)]
        if args.checkpointing:
            variants.append(("fp32 + ckpt", False, True))
        try:
            results = time_variants(task, args, variants)
        except RuntimeError as exc:  # bf16 kernels missing on an old CPU/GPU
            print(f"{task:<6}  bf16 not supported here: {str(exc).splitlines()[0][:60]}")
            results = time_variants(task, args, variants[:1])
        base = None
        for label, bf16, ckpt in variants:
            if label not in results:
                continue
            its, mem = results[label]
            if mem is None:
                mem = _memory_in_child(task, args, bf16, ckpt)
            if base is None:
                base = (its, mem)
            print(f"{task:<6}{label:<16}{its:>8.2f}{mem:>10.0f}{its / base[0]:>15.2f}"
                  f"{(mem / base[1] if base[1] else float('nan')):>16.2f}")

if __name__ == "__main__":
    main()
