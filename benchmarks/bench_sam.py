"""Time referring image segmentation on CPU: UniRef-SAM ViT-B against UniRef++ R50, in one process.

Both models are built with random weights at their official sizes (nothing is loaded or downloaded) and run
RIS through the same :class:`~uniref.inference.image_predictor.ImagePredictor` on the same image (default
768x1024, a smooth synthetic scene):

* ``sam_vit_b``: SAM's input, longest side 1024 padded to 1024x1024, BERT-base text encoder;
* ``r50``: its own RIS test size, shortest side 800 / longest at most 1333 (800x1067 here).

The runs alternate (SAM, R50, SAM, R50, ...) after one warm-up each, so a change in machine load affects both;
the script prints the median and minimum seconds per image of each and the ratio SAM / R50 of the medians.

    PYTHONPATH=src python benchmarks/bench_sam.py                 # 3 timed runs each, 2 threads
    PYTHONPATH=src python benchmarks/bench_sam.py --repeats 5 --threads 4
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

import uniref
from uniref.inference.image_predictor import ImagePredictor

SENTENCE = "the red ball on the left"


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """``[H, W, 3]`` uint8: a smooth background with a few coloured discs (content does not change the cost)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    img = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], -1)
    for _ in range(5):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.05, 0.2) * min(height, width)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


def time_once(predictor: ImagePredictor, image: np.ndarray) -> float:
    start = time.perf_counter()
    predictor.segment(image, text=SENTENCE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = synthetic_image(args.height, args.width)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical cores, load average at start {os.getloadavg()[0]:.2f}")

    models = {}
    for name in ("sam_vit_b", "r50"):
        start = time.perf_counter()
        model = uniref.build_model(name)  # random weights, official sizes
        models[name] = ImagePredictor(model)
        params = sum(p.numel() for p in model.parameters())
        print(f"built {name}: {params / 1e6:.1f}M parameters in {time.perf_counter() - start:.1f} s")
    sam_cfg, r50_cfg = models["sam_vit_b"].model.config, models["r50"].model.config
    print(f"input {args.height}x{args.width}: sam_vit_b longest side {sam_cfg.img_size} padded to "
          f"{sam_cfg.img_size}x{sam_cfg.img_size}; r50 shortest side {r50_cfg.ris_test_size.short} "
          f"(max {r50_cfg.ris_test_size.max_size})")

    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, predictor in models.items():
            warm = time_once(predictor, image)
            print(f"warm-up {name}: {warm:.2f} s")
        for i in range(args.repeats):
            for name, predictor in models.items():
                times[name].append(time_once(predictor, image))
                print(f"run {i + 1} {name}: {times[name][-1]:.2f} s")

    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:10s} median {med[name]:.2f} s/image, min {min(t):.2f} s/image over {len(t)} runs")
    print(f"ratio sam_vit_b / r50 (medians): {med['sam_vit_b'] / med['r50']:.2f}")
    print(f"load average at end {os.getloadavg()[0]:.2f} (the machine may be shared: compare only within one run)")


if __name__ == "__main__":
    main()
