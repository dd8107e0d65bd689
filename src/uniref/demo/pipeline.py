"""``run_demo``: a held-out synthetic world, the four tasks with one model, overlays and a metrics table.

Steps (all offline):

1. write a small world of a seed never used in training (:data:`DEMO_SEED`) in the four native layouts;
2. read it back with the benchmark readers (``refcoco``, ``fss1000``, ``davis17``, ``refytvos``);
3. RIS and FSS with :class:`~uniref.inference.ImagePredictor`, VOS and RVOS with
   :class:`~uniref.inference.video_predictor.VideoPredictor`;
4. score with the evaluators (RIS oIoU / mIoU, FSS mIoU, DAVIS J&F with the first-appearance protocol since
   objects enter late, RVOS J&F per expression) and write the predicted masks (``<task>/predictions``: binary
   PNGs for RIS and FSS, DAVIS palette PNGs for VOS, the Ref-YouTube-VOS layout for RVOS), overlays (PNG for
   images, mp4 + GIF for videos), ``overview.png`` (one picture of all four tasks), ``metrics.json`` and
   ``metrics.txt``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uniref.data.synthetic.world import HELD_OUT_SEED, WorldConfig

__all__ = ["DEMO_SEED", "DemoSizes", "DemoReport", "run_demo", "format_table"]

DEMO_SEED = HELD_OUT_SEED + 7
"""The held-out world of the demo (training uses seeds below :data:`HELD_OUT_SEED`)."""

_SCALE = 3  # overlays are drawn on frames upscaled 3x, so that captions are readable
_FPS = 6.0


@dataclass(frozen=True)
class DemoSizes:
    """How much of the held-out world the demo runs on, and how many overlays it writes per task."""

    ris_images: int = 5
    fss_per_class: int = 4
    vos_clips: int = 4
    rvos_clips: int = 2
    overlays: int = 6

    @staticmethod
    def tiny() -> "DemoSizes":
        """The smallest meaningful run (tests)."""
        return DemoSizes(ris_images=2, fss_per_class=2, vos_clips=1, rvos_clips=1, overlays=2)


@dataclass
class DemoReport:
    """What the demo did.

    Attributes:
        metrics: task -> its metrics (percent) and counts.
        table: the printed table.
        files: every overlay, prediction and summary file written.
        seconds: wall time per step and in total.
        out_dir: the output folder.
    """

    metrics: dict[str, dict[str, float]]
    table: str
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    out_dir: Path = Path(".")


# ------------------------------------------------------------------------------------------ drawing


def _up(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(image, _SCALE, axis=0), _SCALE, axis=1)


def _overlay(image: np.ndarray, labels: np.ndarray, **kwargs) -> np.ndarray:
    from uniref.io.overlay import overlay_masks

    # a strong fill and a wide outline: the world's objects are themselves brightly coloured
    return overlay_masks(_up(image), _up(labels.astype(np.uint8)), show_ids=False, alpha=0.65, outline=3, **kwargs)


def _save_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def _side_by_side(*panels: np.ndarray, gap: int = 4) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, gap), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate(padded, axis=1)[:, :-gap]


def _write_video(stem: Path, frames: list[np.ndarray]) -> list[Path]:
    from uniref.io.video import write_gif, write_video

    stem.parent.mkdir(parents=True, exist_ok=True)
    return [write_video(stem.with_suffix(".mp4"), frames, _FPS, overwrite=True),
            write_gif(stem.with_suffix(".gif"), frames, _FPS, overwrite=True)]


# ------------------------------------------------------------------------------------------ tasks


def _file_stem(sample_id: str) -> str:
    """A sample id as a file name (ids of FSS queries hold their class folder)."""
    return str(sample_id).replace("/", "_")


def _run_ris(model: nn.Module, root: Path, out: Path, sizes: DemoSizes, files: list[Path]) -> tuple[dict, list]:
    from uniref.data.datasets import build_dataset
    from uniref.evaluation.ris import RISEvaluator
    from uniref.inference.image_predictor import ImagePredictor

    from uniref.io.masks import save_binary_png

    reader = build_dataset("refcoco", root, split="val")
    predictor = ImagePredictor(model)
    evaluator = RISEvaluator()
    panels = []
    for n, sample in enumerate(reader):
        image, gt = sample.load_image(), sample.load_mask()
        pred = predictor.segment(image, text=sample.expression).mask
        files.append(save_binary_png(out / "ris" / "predictions" / f"{_file_stem(sample.sample_id)}.png", pred,
                                     overwrite=True))
        iou = evaluator.process(pred, gt, entry_id=sample.sample_id)
        if n < sizes.overlays:
            panel = _side_by_side(_overlay(image, pred, caption=f"\"{sample.expression}\"  IoU {iou:.2f}"),
                                  _overlay(image, gt, caption="ground truth"))
            files.append(_save_png(out / "ris" / f"{n:02d}_{sample.sample_id}.png", panel))
            panels.append(panel)
    m = evaluator.evaluate()
    return {"oIoU": m.oiou, "mIoU": m.miou, "P@0.5": m.precision[0.5], "count": m.count}, panels


def _run_fss(model: nn.Module, root: Path, out: Path, sizes: DemoSizes, files: list[Path]) -> tuple[dict, list]:
    from uniref.data.datasets import build_dataset
    from uniref.evaluation.ris import FSSEvaluator
    from uniref.inference.image_predictor import ImagePredictor
    from uniref.io.masks import save_binary_png

    reader = build_dataset("fss1000", root, split="val", shots=1)
    predictor = ImagePredictor(model)
    evaluator = FSSEvaluator()
    panels = []
    for n, sample in enumerate(reader):
        support = sample.supports[0]
        s_img, s_mask = support.load_image(), support.load_mask()
        image, gt = sample.load_image(), sample.load_mask()
        pred = predictor.segment(image, examples=[(s_img, s_mask)]).mask
        files.append(save_binary_png(out / "fss" / "predictions" / f"{_file_stem(sample.sample_id)}.png", pred,
                                     overwrite=True))
        cls = sample.info["class_name"]
        iou = evaluator.process(pred, gt, cls, entry_id=sample.sample_id)
        if n % max(1, len(reader) // max(1, sizes.overlays)) == 0 and len(panels) < sizes.overlays:
            panel = _side_by_side(_overlay(s_img, s_mask, caption=f"support ({cls.split('_', 1)[-1]})"),
                                  _overlay(image, pred, caption=f"query: prediction, IoU {iou:.2f}"))
            files.append(_save_png(out / "fss" / f"{_file_stem(sample.sample_id)}.png", panel))
            panels.append(panel)
    m = evaluator.evaluate()
    return {"mIoU": m.miou, "class-mIoU": m.class_miou, "FB-IoU": m.fb_iou, "count": m.count}, panels


def _run_vos(model: nn.Module, root: Path, out: Path, sizes: DemoSizes, files: list[Path]) -> tuple[dict, list]:
    from uniref.data.datasets import build_dataset
    from uniref.data.datasets.base import first_appearances
    from uniref.evaluation.davis import evaluate_folder
    from uniref.inference.video_predictor import VideoPredictor
    from uniref.io.masks import save_label_png

    reader = build_dataset("davis17", root, split="val")
    predictor = VideoPredictor(model, preset="davis")
    pred_root = out / "vos" / "predictions"
    strips = []
    for n, sample in enumerate(reader):
        frames = [sample.load_frame(t) for t in range(len(sample))]
        state = predictor.init_state(frames)
        # objects that enter later are given on their first visible frame (the reader gives frame 0 only)
        for obj, (t, path) in sorted(first_appearances(sample.annotation_paths).items()):
            predictor.add_mask(state, t, obj, sample.load_annotation(t) == obj)
        overlays = []
        for result in predictor.propagate(state):
            name = sample.frame_names[result.frame_idx]
            files.append(save_label_png(pred_root / sample.name / f"{name}.png", result.label_map, overwrite=True))
            if n < sizes.overlays:
                overlays.append(_overlay(frames[result.frame_idx], result.label_map,
                                         caption=f"VOS {sample.name} frame {result.frame_idx}"))
        if n < sizes.overlays:
            files.extend(_write_video(out / "vos" / sample.name, overlays))
            strips.append(overlays)
    result = evaluate_folder(reader.annotations_dir, pred_root, sequences=list(reader.names),
                             protocol="first_appearance")
    table = result.global_table()
    return {"J&F": table["J&F-Mean"], "J": table["J-Mean"], "F": table["F-Mean"],
            "count": float(len(result.objects))}, strips


def _run_rvos(model: nn.Module, root: Path, out: Path, sizes: DemoSizes, files: list[Path]) -> tuple[dict, list]:
    from uniref.data.datasets import build_dataset
    from uniref.evaluation.davis import VOSResult, evaluate_sequence
    from uniref.inference.video_predictor import VideoPredictor
    from uniref.io.masks import save_binary_png

    reader = build_dataset("refytvos", root, split="valid")
    predictor = VideoPredictor(model, rvos_mode="propagate")
    scores = []
    strips = []
    for n, sample in enumerate(reader):
        frames = [sample.load_frame(t) for t in range(len(sample))]
        labels = [sample.load_annotation(t) for t in range(len(sample))]
        shown: dict[int, tuple[str, list[np.ndarray]]] = {}
        for exp in sample.expressions:
            state = predictor.init_state(frames)
            predictor.add_text(state, 1, exp.text)
            masks = []
            for result in predictor.propagate(state):
                mask = result.masks[0] if result.obj_ids else np.zeros(frames[0].shape[:2], bool)
                masks.append(mask)
                where = reader.prediction_path(out / "rvos" / "predictions", sample, result.frame_idx, exp.exp_id)
                files.append(save_binary_png(where, mask, overwrite=True))
            gt = [(lab == exp.obj_id).astype(np.uint8) for lab in labels]
            scores += evaluate_sequence(gt, [m.astype(np.uint8) for m in masks], name=f"{sample.name}/{exp.exp_id}",
                                        protocol="first_appearance", skip_first_last=False)
            shown.setdefault(exp.obj_id, (exp.text, masks))
        if n < sizes.overlays:
            ids = sorted(shown)
            legend = {i + 1: shown[obj][0] for i, obj in enumerate(ids)}
            overlays = []
            for t, frame in enumerate(frames):
                lab = np.zeros(frame.shape[:2], np.uint8)
                for i, obj in enumerate(ids):
                    lab[shown[obj][1][t]] = i + 1
                overlays.append(_overlay(frame, lab, legend=legend))
            files.extend(_write_video(out / "rvos" / sample.name, overlays))
            strips.append(overlays)
    table = VOSResult(scores, protocol="first_appearance").global_table()
    return {"J&F": table["J&F-Mean"], "J": table["J-Mean"], "F": table["F-Mean"], "count": float(len(scores))}, strips


# ------------------------------------------------------------------------------------------ report


_HEADLINE = {"RIS": ("oIoU", "referring image segmentation"), "FSS": ("mIoU", "few-shot segmentation (1-shot)"),
             "VOS": ("J&F", "video object segmentation"), "RVOS": ("J&F", "referring video object segmentation")}


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table: task, headline metric, other metrics, entries."""
    rows = [("task", "metric", "value", "others", "entries")]
    for task, m in metrics.items():
        key, _ = _HEADLINE[task]
        others = ", ".join(f"{k} {v:.1f}" for k, v in m.items() if k not in (key, "count"))
        rows.append((task, key, f"{m[key]:.1f}", others, str(int(m["count"]))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _overview(panels: dict[str, list]) -> np.ndarray:
    """One picture: RIS and FSS panels, then a strip of VOS and RVOS frames."""
    rows = []
    for key in ("RIS", "FSS"):
        if panels.get(key):
            rows.append(_side_by_side(*panels[key][:2], gap=8))
    for key in ("VOS", "RVOS"):
        if panels.get(key):
            frames = panels[key][0]
            picks = [frames[i] for i in np.linspace(0, len(frames) - 1, 4).round().astype(int)]
            rows.append(_side_by_side(*picks, gap=8))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _check_output_folder(out: Path) -> None:
    """The demo rewrites its own earlier output, never a folder that holds something else."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"demo output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not ((out / "world").is_dir() or (out / "metrics.json").is_file()):
        raise FileExistsError(f"demo output folder {out} is not empty and holds no earlier demo output; "
                              "choose another --out")


def run_demo(
    out_dir: str | Path,
    weights: str | Path | None = None,
    *,
    model: nn.Module | None = None,
    seed: int = DEMO_SEED,
    sizes: DemoSizes = DemoSizes(),
    config: WorldConfig = WorldConfig(),
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = print,
) -> DemoReport:
    """Run the four tasks on a freshly generated held-out world and write overlays and metrics.

    Args:
        out_dir: output folder (created; the world is written to ``out_dir/world``).
        weights: demo weights (default: the bundled ``uniref/assets/demo.safetensors``).
        model: an already built ``demo`` model (then ``weights`` is ignored).
        seed: the world's seed (keep it >= ``HELD_OUT_SEED`` for held-out numbers).
        sizes: how much of the world to run on.
        log: where progress lines go (None: silent).

    Raises:
        FileNotFoundError: no weights (the message says which file and how to make it).
        FileExistsError: ``out_dir`` holds files that are not an earlier demo's output.
    """
    from uniref.data.synthetic.writers import write_world
    from uniref.demo.weights import build_demo_model

    say = log or (lambda _: None)
    out = Path(out_dir)
    _check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if model is None:
        model = build_demo_model(weights, device=device)
    model.eval()
    seconds["model"] = time.perf_counter() - start

    t = time.perf_counter()
    layout = write_world(out / "world", seed, ris={"val": sizes.ris_images}, fss={"val": sizes.fss_per_class},
                         vos={"val": sizes.vos_clips}, rvos={"valid": sizes.rvos_clips}, config=config, overwrite=True)
    seconds["world"] = time.perf_counter() - t
    say(f"held-out world (seed {seed}) written to {out / 'world'} in {seconds['world']:.1f}s")

    files: list[Path] = []
    metrics: dict[str, dict[str, float]] = {}
    panels: dict[str, list] = {}
    steps = (("RIS", _run_ris, layout.refer), ("FSS", _run_fss, layout.fss), ("VOS", _run_vos, layout.davis),
             ("RVOS", _run_rvos, layout.refytvos))
    with torch.inference_mode():
        for name, step, root in steps:
            t = time.perf_counter()
            metrics[name], panels[name] = step(model, root, out, sizes, files)
            seconds[name] = time.perf_counter() - t
            key = _HEADLINE[name][0]
            say(f"{name}: {key} {metrics[name][key]:.1f} over {int(metrics[name]['count'])} entries "
                f"({seconds[name]:.1f}s)")
    if any(panels.values()):
        files.append(_save_png(out / "overview.png", _overview(panels)))
    table = format_table(metrics)
    seconds["total"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps({"seed": seed, "metrics": metrics, "seconds": seconds}, indent=2))
    (out / "metrics.txt").write_text(table + "\n")
    files += [out / "metrics.json", out / "metrics.txt"]
    say(table)
    say(f"overlays in {out} ({seconds['total']:.0f}s in all)")
    return DemoReport(metrics, table, files, seconds, out)
