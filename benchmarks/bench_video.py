"""Time the fast and the reference video engines, and check that memory stays flat over long videos.

For each config (calibrated random weights) it runs VOS on generated frames with 1, 3 and 10 objects
(masks given on frame 0, every object kept: score threshold 0) and prints the per-frame time of both
engines on the frames after the first (the engines run in lockstep on each frame, so load from other
processes hits both alike), the fast/reference ratio, the extra cost of each added object as a fraction of
the one-object frame, and where the time goes (backbone, decoder, mask encoder). Then it streams a long
generated video through the tiny config's fast engine from a lazy iterator and prints the peak resident
memory (``VmHWM`` of ``/proc/self/status``, restarted after frame 5) after 50 frames and at the end, and
their ratio.

    python benchmarks/bench_video.py                     # tiny + r50, 2,000-frame memory run
    python benchmarks/bench_video.py --configs tiny --long-frames 300

Sizes (chosen to finish on a shared 2-core CPU):

* tiny: 120x160 frames at the tiny config's own test size (short side 144, as in the reference data);
* r50: 240x320 frames processed at that size (``video_test_size`` 240 instead of the official 480) and a
  2-layer 128-wide BERT instead of bert-base (VOS never runs the text encoder; this only saves build time
  and memory);
* memory: tiny config, 32x32 frames at test size 32 (``--memory-size``), one object.

Random weights are calibrated first (the controller's last layer scaled by 0.3 and the last dynamic conv's
bias shifted, as the reference data's tiny weights were made) so that masks are neither empty nor full and
objects stay visible: the per-frame work then includes the previous-frame reference updates.

The goals of the inference issue: fast/reference <= 0.6 at one object and falling as objects are added;
memory ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import uniref  # noqa: E402
from uniref.configs import TestResize  # noqa: E402
from uniref.inference.preprocess import pad_mask, prepare_image, resize_mask_nearest  # noqa: E402
from uniref.inference.video_predictor import VideoPredictor  # noqa: E402
from uniref.modeling.reference.templates import concat_references  # noqa: E402

OBJECT_COUNTS = (1, 3, 10)
TINY_BERT = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}


def frames(height: int, width: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Generated frames, one at a time: a drifting smooth pattern with noise (nothing is kept)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, 3)
    for t in range(count):
        channels = [
            127 + 100 * np.sin(xx / (9 + 3 * c) + yy / (13 + 2 * c) + phases[c] + 0.15 * t) for c in range(3)
        ]
        img = np.stack(channels, -1) + rng.normal(0, 5, (height, width, 3))
        yield np.clip(img, 0, 255).astype(np.uint8)


def object_masks(height: int, width: int, count: int, seed: int = 1) -> dict[int, np.ndarray]:
    """``count`` ellipses spread over the frame (they may overlap), ids 1..count."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    masks = {}
    for k in range(count):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.15, 0.85) * width
        ry, rx = rng.uniform(0.08, 0.2) * height, rng.uniform(0.06, 0.15) * width
        masks[k + 1] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return masks


@torch.inference_mode()
def calibrate(model, frame: np.ndarray, mask: np.ndarray) -> float:
    """Make random weights give masks that are neither empty nor full, as the reference data's tiny weights were
    made: scale the controller's last layer by 0.3, then shift the bias of the last dynamic conv by minus the
    60 % quantile of the top query's mask logits on one frame. Returns the shift."""
    last = model.controller.layers[-1]
    last.weight.mul_(0.3)
    last.bias.mul_(0.3)
    size = model.config.video_test_size
    prepared = prepare_image(model, frame, size.short, size.max_size)
    batch, pad, sizes = model.pad_batch([prepared.tensor])
    feats = model.extract_features(batch, pad)
    ref = model.encode_mask(batch, pad_mask(resize_mask_nearest(mask, prepared.size), tuple(batch.shape[-2:]),
                                            model.device), feats)
    out = model.decode(feats, sizes, mask=concat_references(ref, ref), masks="top1",
                       mask_out_stride=model.config.mask_stride_vos)
    shift = -float(torch.quantile(out.pred_masks[0, 0, 0].flatten().float(), 0.6))
    last.bias[-1] += shift
    return shift


def build(name: str, **overrides):
    """A config with calibrated random weights."""
    torch.manual_seed(0)
    model = uniref.build_model(name, **overrides)
    size = model.config.video_test_size.short
    first = next(frames(size, size * 4 // 3, 1))
    calibrate(model, first, object_masks(size, size * 4 // 3, 1)[1])
    return model


STAGES = ("extract_features", "decode", "encode_mask")
STAGE_NAMES = {"extract_features": "backbone", "decode": "decode", "encode_mask": "mask-enc"}


class StageClock:
    """Adds up the time spent in the model's backbone, decoder and mask encoder (wraps the methods)."""

    def __init__(self, model) -> None:
        self.model = model
        self.seconds = dict.fromkeys(STAGES, 0.0)
        for name in STAGES:
            setattr(model, name, self._timed(name, getattr(model, name)))

    def _timed(self, name, method):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return run

    def reset(self) -> dict[str, float]:
        out, self.seconds = self.seconds, dict.fromkeys(STAGES, 0.0)
        return out

    def remove(self) -> None:
        for name in STAGES:
            delattr(self.model, name)


def time_engines(model, size: tuple[int, int], objects: int, num_frames: int) -> dict[str, dict]:
    """Both engines in lockstep on the same frames (the order alternating per frame), so load changes on a
    shared machine hit both alike. Frame 0 adds the objects and is not timed.

    Returns per engine: the fastest timed frame's wall seconds and its seconds per stage (the minimum is the
    estimate least disturbed by other processes), the process CPU seconds per frame (mean), and the mean
    number of objects visible per frame (those whose previous-frame reference gets updated).
    """
    masks = object_masks(*size, objects)
    engines = ("fast", "reference")
    predictors = {e: VideoPredictor(model, engine=e, score_threshold=0.0) for e in engines}
    clock = StageClock(model)
    best = {e: (float("inf"), {}) for e in engines}
    cpu = {e: 0.0 for e in engines}
    visible = {e: 0 for e in engines}
    try:
        for idx, frame in enumerate(frames(*size, num_frames)):
            order = engines if idx % 2 else engines[::-1]
            for engine in order:
                clock.reset()
                start, start_cpu = time.perf_counter(), time.process_time()
                result = predictors[engine].step(frame, masks if idx == 0 else None)
                elapsed, used = time.perf_counter() - start, time.process_time() - start_cpu
                spent = clock.reset()
                if idx > 0:
                    if elapsed < best[engine][0]:
                        best[engine] = (elapsed, spent)
                    cpu[engine] += used
                    visible[engine] += sum(bool((result.label_map == o).any()) for o in result.obj_ids)
    finally:
        clock.remove()
    timed = num_frames - 1
    return {
        e: {"time": best[e][0], "stages": best[e][1], "cpu": cpu[e] / timed, "visible": visible[e] / timed}
        for e in engines
    }


def bench_config(name: str, size: tuple[int, int], num_frames: int) -> list[str]:
    overrides = {}
    if name == "r50":
        overrides = {"text": TINY_BERT, "video_test_size": TestResize(min(size), 1333)}
    model = build(name, **overrides)
    short = model.config.video_test_size.short
    time_engines(model, size, 1, 2)  # warm-up: first calls of each shape
    rows = {}
    for n in OBJECT_COUNTS:
        rows[n] = time_engines(model, size, n, num_frames)
        print(f"  [{name} {n} obj: fast {rows[n]['fast']['time']:.3f}, reference {rows[n]['reference']['time']:.3f} "
              "s/frame]", file=sys.stderr, flush=True)
    del model
    title = (f"{name}: {size[0]}x{size[1]} frames, test size {short}; wall seconds of the fastest of "
             f"{num_frames - 1} timed frames")
    lines = [title, f"{'objects':>8} {'fast s/f':>9} {'ref s/f':>9} {'fast/ref':>9} {'fast +obj':>10} "
             f"{'ref +obj':>9} {'cpu f/r':>8} {'visible':>8}"]
    f1, r1 = rows[1]["fast"]["time"], rows[1]["reference"]["time"]
    for n in OBJECT_COUNTS:
        fast, ref = rows[n]["fast"]["time"], rows[n]["reference"]["time"]
        if n > 1:
            extra = f"{(fast - f1) / ((n - 1) * f1):>10.3f} {(ref - r1) / ((n - 1) * r1):>9.3f}"
        else:
            extra = f"{'-':>10} {'-':>9}"
        cpu_ratio = rows[n]["fast"]["cpu"] / rows[n]["reference"]["cpu"]
        lines.append(f"{n:>8} {fast:>9.3f} {ref:>9.3f} {fast / ref:>9.3f} {extra} {cpu_ratio:>8.3f} "
                     f"{rows[n]['fast']['visible']:>8.1f}")
    lines.append("  +obj: extra time of each added object as a fraction of the one-object frame; cpu f/r: "
                 "fast/reference in process CPU time (mean)")
    lines.append(f"  seconds per frame by stage, fast | reference ({', '.join(STAGE_NAMES.values())}):")
    for n in OBJECT_COUNTS:
        cells = [" ".join(f"{rows[n][e]['stages'][k]:6.2f}" for k in STAGES) for e in ("fast", "reference")]
        lines.append(f"{n:>8}   {cells[0]} | {cells[1]}")
    return lines


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0), so the peak of the model build does not hide the run's."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def bench_memory(short_frames: int, long_frames: int, size: int) -> list[str]:
    model = build("tiny", video_test_size=TestResize(size, size * 2))
    build_peak = _status_kib("VmHWM")
    predictor = VideoPredictor(model, score_threshold=0.0)
    state = predictor.init_state(frames(size, size, long_frames))  # a generator: frames are made on demand
    predictor.add_mask(state, 0, 1, object_masks(size, size, 1)[1])
    marks, visible, reset = {}, 0, False
    start = time.perf_counter()
    for result in predictor.propagate(state):
        done = result.frame_idx + 1
        visible += bool(result.label_map.any())
        if done == 5:
            reset = _reset_peak()  # steady state from here: the first frames allocate the workspaces
        if done in (5, short_frames, long_frames):
            marks[done] = (_status_kib("VmHWM"), _status_kib("VmRSS"))
        if done % 250 == 0:
            print(f"  [memory run: {done}/{long_frames} frames, VmHWM {_status_kib('VmHWM') / 1024:.1f} MiB]",
                  file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    base = marks[5][1]
    (h_short, r_short), (h_long, r_long) = marks[short_frames], marks[long_frames]
    peak = "VmHWM since frame 5" if reset else "VmHWM (whole process)"
    return [
        f"memory: tiny config, fast engine, {size}x{size} frames from a lazy iterator, 1 object visible on "
        f"{visible}/{long_frames} frames ({seconds / long_frames:.3f} s/frame); build peak {build_peak / 1024:.1f} MiB",
        f"{'frames':>8} {peak + ' MiB':>25} {'VmRSS MiB':>10} {'RSS growth since frame 5 MiB':>29}",
        f"{short_frames:>8} {h_short / 1024:>25.1f} {r_short / 1024:>10.1f} {(r_short - base) / 1024:>29.1f}",
        f"{long_frames:>8} {h_long / 1024:>25.1f} {r_long / 1024:>10.1f} {(r_long - base) / 1024:>29.1f}",
        f"peak ratio {long_frames}/{short_frames} frames: {h_long / h_short:.4f} (goal <= 1.05)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="tiny,r50", help="comma-separated configs to time (tiny, r50)")
    parser.add_argument("--tiny-frames", type=int, default=5, help="frames per timing cell for tiny (first untimed)")
    parser.add_argument("--r50-frames", type=int, default=3, help="frames per timing cell for r50 (first untimed)")
    parser.add_argument("--short-frames", type=int, default=50)
    parser.add_argument("--long-frames", type=int, default=2000, help="0 skips the memory run")
    parser.add_argument("--memory-size", type=int, default=32, help="frame side of the memory run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = {"tiny": ((120, 160), args.tiny_frames), "r50": ((240, 320), args.r50_frames)}
    names = [c for c in args.configs.split(",") if c]
    for name in names:
        if name not in sizes:
            parser.error(f"unknown config {name!r}; choose from {', '.join(sizes)}")
    print(f"torch {torch.__version__}, {args.threads} threads, CPU", flush=True)
    for name in names:  # each table as soon as it is measured
        size, count = sizes[name]
        print("\n" + "\n".join(bench_config(name, size, count)), flush=True)
    if args.long_frames:
        print("\n" + "\n".join(bench_memory(args.short_frames, args.long_frames, args.memory_size)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
