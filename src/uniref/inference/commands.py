"""``uniref ris | fss | vos | rvos``: the four tasks from the command line.

Every command checks its inputs (files, sizes, masks, sentences, the output folder) before it loads the model,
writes its results all-or-nothing (:class:`~uniref.inference.writers.StagedOutput`), and on bad input prints
one line and exits non-zero (the error handling is :func:`uniref.cli.main`'s).
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_CONFIG = "r50"
DEFAULT_OUT = "uniref_output"


class InputError(ValueError):
    """A bad command-line input; printed as one line."""


# --------------------------------------------------------------------------- parser
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ris``, ``fss``, ``vos`` and ``rvos`` to the ``uniref`` command line."""
    p = subparsers.add_parser("ris", help="referring image segmentation: image(s) + a sentence -> mask")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s); one result per image")
    p.add_argument("--text", help="the referring sentence (required)")
    _image_options(p)
    p.set_defaults(func=_with_one_line_warnings(_cmd_ris))

    p = subparsers.add_parser("fss", help="few-shot segmentation: query image(s) + examples (image, mask) -> mask")
    p.add_argument("images", nargs="+", metavar="QUERY", help="query image file(s); one result per image")
    p.add_argument("--example", nargs=2, action="append", metavar=("IMG", "MASK"), default=None,
                   help="an example image and its object mask (binary or palette PNG); repeat for k shots (>= 1)")
    _image_options(p)
    p.set_defaults(func=_with_one_line_warnings(_cmd_fss))

    p = subparsers.add_parser("vos", help="video object segmentation: video + object masks -> masks on every frame")
    p.add_argument("video", metavar="VIDEO", help="video file (mp4/webm/mkv/avi...) or folder of jpg/png frames")
    p.add_argument("--masks", metavar="PNG_OR_DIR",
                   help="a DAVIS palette PNG of frame 0, or a folder of palette PNGs named like the frames "
                        "(an object starts at the first frame whose PNG contains it) (required)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="drop an object's mask on a frame when its score is at most this (default: the preset's)")
    _video_options(p, default_format="davis")
    p.set_defaults(func=_with_one_line_warnings(_cmd_vos))

    p = subparsers.add_parser("rvos", help="referring video object segmentation: video + sentences -> masks")
    p.add_argument("video", metavar="VIDEO", help="video file (mp4/webm/mkv/avi...) or folder of jpg/png frames")
    p.add_argument("--text", action="append", default=None,
                   help="a sentence describing one object; repeat for several (object ids 1..K in order)")
    p.add_argument("--mode", choices=("propagate", "per_frame"), default="propagate",
                   help="propagate: language, then language + first/previous mask references (Ref-YouTube-VOS); "
                        "per_frame: language only on every frame (Ref-DAVIS)")
    p.add_argument("--score-threshold", type=float, default=0.3,
                   help="a frame's mask counts only when its score is above this (default 0.3)")
    _video_options(p, default_format="ytvos")
    p.set_defaults(func=_with_one_line_warnings(_cmd_rvos))


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help=f"model config (r50, swinl, tiny, ...); default: the config stored in --weights, else "
                        f"{DEFAULT_CONFIG}")
    p.add_argument("--weights", default=None,
                   help="checkpoint: an official .pth or a .safetensors from `uniref convert` "
                        "(required unless the config ships bundled weights)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="parameter dtype (default float32)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--overlay", action="store_true", help="also write overlays (coloured masks on the input)")


def _image_options(p: argparse.ArgumentParser) -> None:
    _model_options(p)
    p.add_argument("--format", action="append", choices=("png", "coco"), default=None,
                   help="png: <out>/<image>.png binary mask (0/255); coco: <out>/results.json with RLE masks, "
                        "scores and boxes. Repeat for both (default: both)")


def _video_options(p: argparse.ArgumentParser, default_format: str) -> None:
    _model_options(p)
    p.add_argument("--format", action="append", choices=("davis", "ytvos", "coco"), default=None,
                   help="davis: <out>/<video>/<frame>.png palette PNGs; ytvos: <out>/<video>/<obj>/<frame>.png "
                        "binary PNGs; coco: <out>/<video>.json RLE per frame and object "
                        f"(default {default_format}; davis and ytvos exclude each other)")
    p.set_defaults(default_format=default_format)
    p.add_argument("--overlay-format", action="append", choices=("mp4", "gif", "png"), default=None,
                   help="overlay kind(s): <video>_overlay.mp4, .gif or a folder of PNGs (default mp4; implies "
                        "--overlay)")
    p.add_argument("--fps", type=float, default=None, help="overlay frame rate (default: the video's, else 24)")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="fast (default) or reference (the official structure; same masks, slower)")
    p.add_argument("--preset", choices=("davis", "ytvos", "lvos", "mose"), default="davis",
                   help="benchmark whose VOS score threshold to use (davis 0.3, ytvos 0.4, lvos 0.5, mose 0.4)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")


def _with_one_line_warnings(fn):
    """Run ``fn`` with warnings printed as one ``uniref <cmd>: warning: ...`` line each."""

    def run(args: argparse.Namespace) -> int:
        def show(message, category, filename, lineno, file=None, line=None):
            text = str(message).strip().splitlines()
            print(f"uniref {args.command}: warning: {text[0] if text else category.__name__}", file=sys.stderr)

        with warnings.catch_warnings():
            # torch's note about wrapping a read-only numpy array (PIL output); harmless, we never write to it
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            warnings.showwarning = show
            return fn(args)

    return run


# --------------------------------------------------------------------------- model
def bundled_weights(config: str) -> Path | None:
    """Weights shipped inside the package for ``config`` (``uniref/weights/<config>.safetensors``), if any."""
    try:
        candidate = importlib.resources.files("uniref").joinpath("weights", f"{config}.safetensors")
    except (ModuleNotFoundError, TypeError):
        return None
    return Path(str(candidate)) if candidate.is_file() else None


def resolve_weights(config: str | None, weights: str | None) -> Path:
    """The checkpoint to load: ``weights``, or the config's bundled weights; errors name the file to supply."""
    name = config or DEFAULT_CONFIG
    if weights is None:
        bundled = bundled_weights(name)
        if bundled is None:
            raise InputError(
                f"config {name!r} has no bundled weights: pass --weights FILE (the {name} checkpoint, an official "
                ".pth or a .safetensors made by `uniref convert`)"
            )
        return bundled
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path} (supply the {name} checkpoint there, or pass its path with --weights)"
        )
    return path


def resolve_device(device: str):
    """Parse ``--device`` and check the accelerator exists here."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from error
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"--device {device}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return dev


def load_model(config: str | None, weights: Path, device, dtype: str):
    """Build the model (the named config, else the one stored in the checkpoint, else r50) and load weights."""
    import torch

    from uniref.checkpoint import config_from_checkpoint
    from uniref.configs import ModelConfig, get_config
    from uniref.modeling.build import build_model

    stored = None
    if config is None:
        try:
            stored = config_from_checkpoint(weights)
        except Exception as error:  # a damaged safetensors header
            raise InputError(f"cannot read weights {weights}: {error}") from error
    cfg = ModelConfig.from_dict(stored) if stored is not None else get_config(config or DEFAULT_CONFIG)
    return build_model(cfg, weights=weights, device=device, dtype=getattr(torch, dtype))


# --------------------------------------------------------------------------- input checks
def check_text(text: Any, what: str = "--text") -> str:
    """A sentence with words left after the official cleaning."""
    from uniref.modeling.text.tokenizer import clean_expression

    if text is None:
        raise InputError(f"{what} is required: give a sentence that describes the object")
    if not text.strip():
        raise InputError(f"empty {what} {text!r}: give a sentence that describes the object")
    if not clean_expression(text).strip():
        raise InputError(f"{what} {text!r} has no words left after removing punctuation")
    return text


def _image_stems(paths: list[str]) -> list[str]:
    stems = [Path(p).stem for p in paths]
    for stem, path in zip(stems, paths):
        if not stem or stem.startswith("."):
            raise InputError(f"cannot name outputs after {path}")
    seen: dict[str, str] = {}
    for stem, path in zip(stems, paths):
        if stem in seen:
            raise InputError(f"{seen[stem]} and {path} would write the same outputs ({stem}.*); run them separately")
        seen[stem] = path
    return stems


def _check_images(paths: list[str]) -> None:
    """Decode every image once so a missing or corrupt file fails before the model loads."""
    from uniref.io.images import load_image

    for path in paths:
        load_image(path)


def _image_formats(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.format or ["png", "coco"]))


def _image_entries(stems: list[str], formats: list[str], overlay: bool) -> list[str]:
    entries = []
    for stem in stems:
        if "png" in formats:
            entries.append(f"{stem}.png")
        if overlay:
            entries.append(f"{stem}_overlay.png")
    if "coco" in formats:
        entries.append("results.json")
    return entries


# --------------------------------------------------------------------------- ris / fss
def _cmd_ris(args: argparse.Namespace) -> int:
    text = check_text(args.text)
    return _run_images(args, text=text, examples=None)


def _cmd_fss(args: argparse.Namespace) -> int:
    from uniref.io.images import load_image
    from uniref.io.masks import load_binary_mask, validate_mask_size

    if not args.example:
        raise InputError("few-shot segmentation needs at least one --example IMG MASK")
    examples = []
    for k, (img_path, mask_path) in enumerate(args.example):
        image = load_image(img_path)
        mask = load_binary_mask(mask_path)
        validate_mask_size(mask, image.shape[:2], what=f"example mask {mask_path}", frame_what=f"its image {img_path}")
        if not mask.any():
            raise InputError(f"example mask {mask_path} is empty: it must mark the object")
        examples.append((image, mask))
    return _run_images(args, text=None, examples=examples)


def _run_images(args: argparse.Namespace, *, text: str | None, examples: list | None) -> int:
    from uniref.inference.image_predictor import ImagePredictor
    from uniref.inference.writers import (
        StagedOutput,
        coco_image_entry,
        image_overlay,
        write_coco_json,
        write_overlay_png,
    )
    from uniref.io.images import load_image
    from uniref.io.masks import save_binary_png

    weights = resolve_weights(args.config, args.weights)
    device = resolve_device(args.device)
    stems = _image_stems(args.images)
    _check_images(args.images)
    formats = _image_formats(args)
    stage = StagedOutput(args.out, _image_entries(stems, formats, args.overlay), overwrite=args.overwrite)
    stage.check()

    lines = []
    with stage:
        predictor = ImagePredictor(load_model(args.config, weights, device, args.dtype))
        entries = []
        caption = text if text is not None else f"few-shot ({len(examples)} example{'s' * (len(examples) > 1)})"
        for path, stem in zip(args.images, stems):
            image = load_image(path)
            if text is not None:
                result = predictor.segment(image, text=text)
            else:
                result = predictor.segment(image, examples=examples)
            written = []
            if "png" in formats:
                save_binary_png(stage.root / f"{stem}.png", result.mask)
                written.append(f"{stem}.png")
            if args.overlay:
                write_overlay_png(stage.root / f"{stem}_overlay.png", image_overlay(image, result, caption=caption))
                written.append(f"{stem}_overlay.png")
            extra: dict[str, Any] = {"file_name": str(path), "query": int(result.query)}
            if text is not None:
                extra["text"] = text
            entries.append(coco_image_entry(result, stem, **extra))
            box = ", ".join(f"{v:.1f}" for v in result.box)
            empty = " (empty box)" if result.box_empty else ""
            lines.append((f"{path}: score {result.score:.3f} box [{box}]{empty} pixels {int(result.mask.sum())}",
                          written))
        if "coco" in formats:
            write_coco_json(stage.root / "results.json", entries)
    out = Path(args.out)
    for summary, written in lines:  # printed once the files are in place
        files = [str(out / w) for w in written] + ([str(out / "results.json")] if "coco" in formats else [])
        print(f"{summary} -> {', '.join(files)}")
    return 0


# --------------------------------------------------------------------------- vos / rvos
@dataclass
class VideoInput:
    """An opened video and what the command needs to know about it before decoding."""

    source: Any
    name: str
    frame_size: tuple[int, int] | None
    frame_names: list[str] | None  # known for frame folders


def open_video_input(path: str) -> VideoInput:
    """Open a video lazily; for frame folders, check every frame's size from its header now."""
    from uniref.io.images import image_size
    from uniref.io.video import FrameFolderSource, FrameSizeError, VideoFileSource, open_video

    source = open_video(path)
    p = Path(path)
    name = (p.resolve().name if p.is_dir() else p.stem) or "video"
    if isinstance(source, FrameFolderSource):
        sizes = [image_size(f) for f in source.files]
        for f, hw in zip(source.files, sizes):
            if hw != sizes[0]:
                raise FrameSizeError(
                    f"frame {f} is {hw[0]}x{hw[1]} (HxW) but the video's first frame {source.files[0].name} is "
                    f"{sizes[0][0]}x{sizes[0][1]}; all frames of a video must have one size"
                )
        return VideoInput(source, name, sizes[0], [f.stem for f in source.files])
    if isinstance(source, VideoFileSource):
        return VideoInput(source, name, (source.height, source.width), None)
    return VideoInput(source, name, None, None)


def load_vos_masks(masks: str, video: VideoInput) -> dict[int, dict[int, np.ndarray]]:
    """``--masks`` -> ``{frame_idx: {obj_id: [H, W] bool}}`` with each object at the first frame it appears on."""
    from uniref.io.masks import load_label_map, validate_mask_size
    from uniref.io.video import FRAME_SUFFIXES, natural_sort_key

    path = Path(masks)
    if not path.exists():
        raise FileNotFoundError(f"mask file or folder not found: {path}")
    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() == ".png" and not f.name.startswith(".")),
                       key=lambda f: natural_sort_key(f.name))
        if not files:
            raise InputError(f"no .png masks in folder {path}")
        by_frame = {}
        for f in files:
            by_frame[_frame_index(f, video)] = f
        ordered = sorted(by_frame.items())
    else:
        if path.suffix.lower() in FRAME_SUFFIXES and path.suffix.lower() != ".png":
            raise InputError(f"masks must be PNG (palette or greyscale), not {path.suffix}: {path}")
        ordered = [(0, path)]
    started: dict[int, int] = {}
    out: dict[int, dict[int, np.ndarray]] = {}
    for frame_idx, f in ordered:
        labels = load_label_map(f)
        if video.frame_size is not None:
            validate_mask_size(labels, video.frame_size, what=f"mask {f}", frame_what="every frame of the video")
        for obj_id in (int(v) for v in np.unique(labels) if v != 0):
            if obj_id not in started:
                started[obj_id] = frame_idx
                out.setdefault(frame_idx, {})[obj_id] = labels == obj_id
    if not started:
        what = f"every mask in {path}" if path.is_dir() else f"mask {path}"
        raise InputError(f"{what} is empty (all background): mark at least one object with a non-zero id")
    return out


def _frame_index(mask_file: Path, video: VideoInput) -> int:
    stem = mask_file.stem
    if video.frame_names is not None:
        try:
            return video.frame_names.index(stem)
        except ValueError:
            raise InputError(
                f"mask {mask_file} matches no frame of {video.source.name} (frames are named like "
                f"{video.frame_names[0]!r})"
            ) from None
    if not stem.isdigit():
        raise InputError(f"mask {mask_file}: name masks of a video file by frame number (00000.png, 00001.png, ...)")
    index = int(stem)
    count = video.source.num_frames
    if count is not None and index >= count:
        raise InputError(f"mask {mask_file} is for frame {index} but {video.source.name} has {count} frames")
    return index


def _video_formats(args: argparse.Namespace) -> list[str]:
    formats = list(dict.fromkeys(args.format or [args.default_format]))
    if "davis" in formats and "ytvos" in formats:
        raise InputError("--format davis and --format ytvos both write <out>/<video>/; choose one")
    return formats


def _cmd_vos(args: argparse.Namespace) -> int:
    if args.masks is None:
        raise InputError("--masks is required: a DAVIS palette PNG of frame 0 or a folder of palette PNGs")
    video = open_video_input(args.video)
    masks_at = load_vos_masks(args.masks, video)
    obj_ids = sorted({o for m in masks_at.values() for o in m})
    return _run_video(args, video, masks_at=masks_at, texts={}, obj_ids=obj_ids)


def _cmd_rvos(args: argparse.Namespace) -> int:
    if not args.text:
        raise InputError("--text is required: one sentence per object (repeat --text for several objects)")
    if len(args.text) > 255:
        raise InputError(f"at most 255 objects per video; got {len(args.text)} sentences")
    texts = {k + 1: check_text(t, f"--text #{k + 1}") for k, t in enumerate(args.text)}
    video = open_video_input(args.video)
    return _run_video(args, video, masks_at={}, texts=texts, obj_ids=sorted(texts))


def _run_video(args, video: VideoInput, *, masks_at, texts, obj_ids) -> int:
    from tqdm import tqdm

    from uniref.inference.video_predictor import VideoPredictor
    from uniref.inference.writers import StagedOutput, VideoResultWriter

    weights = resolve_weights(args.config, args.weights)
    device = resolve_device(args.device)
    formats = _video_formats(args)
    overlays = list(dict.fromkeys(args.overlay_format or (["mp4"] if args.overlay else [])))
    fps = args.fps or video.source.fps or 24.0
    writer = VideoResultWriter(video.name, formats=formats, overlays=overlays, fps=fps, legend=texts,
                               all_obj_ids=obj_ids)
    stage = StagedOutput(args.out, writer.entries(), overwrite=args.overwrite)
    stage.check()

    with stage:
        model = load_model(args.config, weights, device, args.dtype)
        if texts:
            predictor = VideoPredictor(model, engine=args.engine, preset=args.preset, rvos_mode=args.mode,
                                       rvos_score_threshold=args.score_threshold)
        else:
            predictor = VideoPredictor(model, engine=args.engine, preset=args.preset,
                                       score_threshold=args.score_threshold)
        seen = {"last": -1}

        def results():
            frames = tqdm(video.source, total=video.source.num_frames, desc=video.name, unit="frame",
                          disable=None if args.progress is None else not args.progress, file=sys.stderr,
                          dynamic_ncols=True)
            try:
                for idx, frame in frames:
                    seen["last"] = idx
                    first = idx == 0
                    result = predictor.step(frame, masks_at.get(idx), texts=texts if first and texts else None)
                    yield video.source.frame_name(idx), frame, result
            finally:
                frames.close()

        summary = writer.write(stage.root, results())
        late = sorted(f for f in masks_at if f > seen["last"])
        if late:
            raise InputError(
                f"masks were given for frame(s) {late} but {video.source.name} has {seen['last'] + 1} frames"
            )
    files = ", ".join(f"{p}/" if p.is_dir() else str(p) for p in stage.committed)
    print(f"{args.video}: {summary.frames} frames, objects {obj_ids} -> {files}")
    return 0
