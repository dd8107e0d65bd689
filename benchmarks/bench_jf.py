"""Time J&F scoring: uniref.evaluation.davis against vos-benchmark on the same generated set.

The set has the shape of DAVIS-17 val: 30 sequences of about 70 frames at 480x854 with 1-4 objects each,
written as DAVIS palette PNGs (``Annotations/480p/<seq>/<frame>.png``), plus a prediction folder made by
moving, growing, eroding and occasionally dropping the true objects. Both tools score it with the same
number of processes; the script prints both times, the ratio ours / vos-benchmark, and the largest
difference between their per-object J and F (they must agree to 1e-6).

    python benchmarks/bench_jf.py            # DAVIS-17-val size (slow to generate on 2 cores)
    python benchmarks/bench_jf.py --small    # 6 sequences x 20 frames
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from uniref.evaluation.davis import evaluate_folder
from uniref.io.palette import davis_palette_flat


def _save(path: Path, labels: np.ndarray, palette: list[int]) -> None:
    image = Image.fromarray(labels)
    image.putpalette(palette)
    image.save(path)


def generate(root: Path, *, sequences: int, frames: int, height: int, width: int, seed: int) -> tuple[Path, Path]:
    """Write ground truth and predictions in the DAVIS layout; returns (gt_root, pred_root)."""
    rng = np.random.default_rng(seed)
    palette = davis_palette_flat()
    gt_root, pred_root = root / "Annotations" / "480p", root / "predictions"
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    for s in range(sequences):
        name = f"seq{s:02d}"
        (gt_root / name).mkdir(parents=True)
        (pred_root / name).mkdir(parents=True)
        count = int(rng.integers(1, 5))
        length = int(frames + rng.integers(-frames // 5, frames // 5 + 1))
        centers = rng.uniform([0.2 * height, 0.2 * width], [0.8 * height, 0.8 * width], (count, 2))
        velocity = rng.normal(0, 3, (count, 2))
        radii = rng.uniform(0.06, 0.2, (count, 2)) * np.array([height, width])
        for t in range(length):
            gt = np.zeros((height, width), np.uint8)
            pred = np.zeros((height, width), np.uint8)
            for k in range(count):
                cy, cx = centers[k] + velocity[k] * t
                ry, rx = radii[k] * (1 + 0.1 * np.sin(t / 7 + k))
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
                gt[inside] = k + 1
                if rng.random() < 0.05 and t > 0:
                    continue  # a missed object in this frame
                dy, dx = rng.normal(0, 4, 2)
                moved = ((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / rx) ** 2 < 1
                change = int(rng.integers(-3, 4))
                if change > 0:
                    moved = ndimage.binary_dilation(moved, iterations=change)
                elif change < 0:
                    moved = ndimage.binary_erosion(moved, iterations=-change)
                pred[moved] = k + 1
            if t == 0:
                pred = gt.copy()
            _save(gt_root / name / f"{t:05d}.png", gt, palette)
            _save(pred_root / name / f"{t:05d}.png", pred, palette)
    return gt_root, pred_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="6 sequences x 20 frames instead of 30 x 70")
    parser.add_argument("--processes", type=int, default=1, help="processes for both tools (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        from vos_benchmark.benchmark import benchmark
    except ImportError:
        print("vos-benchmark is not installed (pip install vos-benchmark)", file=sys.stderr)
        return 1

    sequences, frames = (6, 20) if args.small else (30, 70)
    with tempfile.TemporaryDirectory(prefix="bench_jf_") as tmp:
        start = time.perf_counter()
        gt_root, pred_root = generate(Path(tmp), sequences=sequences, frames=frames, height=480, width=854,
                                      seed=args.seed)
        print(f"generated {sequences} sequences (~{frames} frames, 480x854) in {time.perf_counter() - start:.1f}s")

        start = time.perf_counter()
        ours = evaluate_folder(gt_root, pred_root, processes=args.processes, protocol="first_appearance")
        ours_time = time.perf_counter() - start

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            _, _, _, theirs = benchmark([str(gt_root)], [str(pred_root)], num_processes=args.processes,
                                        verbose=False)
        theirs_time = time.perf_counter() - start

        worst = 0.0
        for obj in ours.objects:
            j_ref, f_ref = theirs[0][obj.sequence]
            worst = max(worst, abs(obj.j.mean() * 100 - j_ref[obj.object_id]),
                        abs(obj.f.mean() * 100 - f_ref[obj.object_id]))
        table = ours.global_table()
        print(f"objects: {len(ours.objects)}; J&F {table['J&F-Mean']:.3f}, J {table['J-Mean']:.3f}, "
              f"F {table['F-Mean']:.3f}; largest |ours - vos-benchmark| per object: {worst:.2e} (percent)")
        print(f"processes: {args.processes}")
        print(f"uniref:        {ours_time:8.2f} s")
        print(f"vos-benchmark: {theirs_time:8.2f} s")
        print(f"ratio ours / vos-benchmark: {ours_time / theirs_time:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
