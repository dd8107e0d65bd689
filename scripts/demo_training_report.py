"""Validate every checkpoint of a ``demo`` training run and draw its training curve.

    python scripts/demo_training_report.py runs/demo [--png docs/images/demo_training.png]
    python scripts/demo_training_report.py --held-out      # the bundled weights on a large held-out world

For each ``model_*.pt`` checkpoint of the run, the four tasks are run on a
validation world (seed ``HELD_OUT_SEED + 1``: never trained on, and not the demo's own held-out seed) with
the demo pipeline's evaluators. Results are cached in ``RUN/validation.json``, so a rerun only evaluates new
checkpoints. The PNG shows the training loss of each task (moving average over the JSON-lines log) and the
headline metric of each task against the iteration, with the targets of the demo.

Needs matplotlib (``pip install "uniref[plot]"``).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from uniref.data.synthetic.world import HELD_OUT_SEED
from uniref.demo.pipeline import DemoSizes, run_demo

VALIDATION_SEED = HELD_OUT_SEED + 1
HEADLINE = {"RIS": "oIoU", "FSS": "mIoU", "VOS": "J&F", "RVOS": "J&F"}
TARGETS = {"RIS": 75.0, "FSS": 75.0, "VOS": 75.0, "RVOS": 65.0}
SIZES = DemoSizes(ris_images=40, fss_per_class=6, vos_clips=6, rvos_clips=6, overlays=0)


def _demo_model(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from uniref.configs import get_config
    from uniref.configs.demo import load_pretrained_text_encoder
    from uniref.modeling.uniref import UniRef

    model = UniRef(get_config("demo"))
    load_pretrained_text_encoder(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("text_encoder.")] + list(unexpected)
    if bad:
        raise ValueError(f"checkpoint does not fit the demo model: {bad[:5]}")
    return model.eval()


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    found = []
    for path in run.glob("model_*.pt"):
        match = re.fullmatch(r"model_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _state_of(path: Path) -> dict[str, torch.Tensor]:
    from uniref.training.engine import read_training_checkpoint

    ckpt = read_training_checkpoint(path)
    if ckpt is None:
        raise ValueError(f"{path} is not a uniref training checkpoint")
    return ckpt["model"]


def validate(run: Path, sizes: DemoSizes = SIZES, seed: int = VALIDATION_SEED) -> dict[int, dict[str, float]]:
    """``{iteration: {task: headline metric}}`` of every checkpoint, cached in ``run/validation.json``."""
    cache_path = run / "validation.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    results = {int(k): v for k, v in cache.get("results", {}).items()} if cache.get("seed") == seed else {}
    torch.set_num_threads(1)
    for iteration, path in _checkpoints(run):
        if iteration in results:
            continue
        model = _demo_model(_state_of(path))
        with tempfile.TemporaryDirectory() as tmp:
            report = run_demo(tmp, model=model, seed=seed, sizes=sizes, log=None)
        results[iteration] = {task: report.metrics[task][key] for task, key in HEADLINE.items()}
        print(f"iteration {iteration}: " + ", ".join(f"{t} {v:.1f}" for t, v in results[iteration].items()),
              flush=True)
        cache_path.write_text(json.dumps({"seed": seed, "results": {str(k): v for k, v in sorted(results.items())}},
                                         indent=1))
    return results


def _losses(run: Path) -> dict[str, list[tuple[int, float]]]:
    per_task: dict[str, list[tuple[int, float]]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row and "dataset" in row:
            task = row["dataset"].split("-")[-1].upper()
            per_task.setdefault(task, []).append((row["iteration"], row["loss"]))
    return per_task


def plot(run: Path, results: dict[int, dict[str, float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(HEADLINE, ("tab:blue", "tab:orange", "tab:green", "tab:red")))  # one colour per task
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for task, rows in sorted(_losses(run).items(), key=lambda item: list(HEADLINE).index(item[0])):
        its, loss = np.array(rows).T
        window = max(1, len(loss) // 40)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        left.plot(its[window - 1:], smooth, label=task, color=colours[task])
    left.set_yscale("log")
    left.set(xlabel="iteration", ylabel="training loss (moving average)", title="training loss per task")
    left.legend()
    its = sorted(results)
    for task in HEADLINE:
        right.plot(its, [results[i][task] for i in its], marker="o", label=f"{task} {HEADLINE[task]}",
                   color=colours[task])
        right.axhline(TARGETS[task], color=colours[task], linestyle=":", linewidth=1)
    right.set(xlabel="iteration", ylabel="percent", ylim=(0, 100),
              title=f"validation world (seed {VALIDATION_SEED}); dotted: targets")
    right.legend(loc="upper left")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    print(f"wrote {png}")


HELD_OUT_SIZES = DemoSizes(ris_images=30, fss_per_class=10, vos_clips=20, rvos_clips=10, overlays=0)


def held_out(weights: Path | None) -> str:
    """The table of a demo weights file (default: the bundled one) on a large held-out world of the demo's seed."""
    from uniref.demo.pipeline import DEMO_SEED, format_table

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        report = run_demo(tmp, weights, seed=DEMO_SEED, sizes=HELD_OUT_SIZES, log=None)
    return format_table(report.metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="the training run's output folder")
    parser.add_argument("--png", type=Path, default=Path("docs/images/demo_training.png"))
    parser.add_argument("--held-out", action="store_true",
                        help="instead: the bundled weights on a large held-out world (the demo's seed)")
    args = parser.parse_args()
    if args.held_out:
        print(held_out(None))
        return
    if args.run is None:
        parser.error("give the training run's folder (or --held-out)")
    results = validate(args.run)
    plot(args.run, results, args.png)


if __name__ == "__main__":
    main()
