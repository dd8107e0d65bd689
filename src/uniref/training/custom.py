"""Fine-tuning data in two simple layouts (and the YTVIS/OVIS-style video JSON of the official mixture).

**COCO-style JSON** (``kind="coco-json"``; also reads COCO ``instances_*.json`` for detection)::

    my_data/
      annotations.json
      images/<file_name>

    {"images": [{"id": 1, "file_name": "a.jpg", "height": 480, "width": 640}],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 1,
                      "segmentation": {"size": [480, 640], "counts": "<COCO RLE>"},   (or polygons)
                      "expressions": ["the dog on the left", "brown dog"]}],
     "categories": [{"id": 1, "name": "dog"}]}

``root`` is the folder (holding ``annotations.json`` and ``images/``) or the JSON file itself (images are then
looked up in ``images/`` beside it, or pass ``images=``). Expressions may also be given as ``"sentences"``:
strings or refer-style ``{"sent": ...}`` dicts. Crowd annotations (``iscrowd: 1``) are skipped.
Tasks: ``det`` (every instance of an image), ``ris`` (one entry per annotation with expressions), ``fss``
(one entry per image and category, the class's union mask; supports come from other images of the
category), and ``vos``/``rvos`` (each image as a static two-frame clip).

**DAVIS-style folders** (``kind="davis-folders"``)::

    my_videos/
      JPEGImages/<video>/<frame>.jpg
      Annotations/<video>/<frame>.png       palette or grey PNG: pixel value = object id (0 background, 255 void)
      expressions.json                      optional (RVOS): {"<video>": {"<object id>": ["the red car", ...]}}

Only frames with an annotation PNG are sampled. Tasks: ``vos`` and ``rvos``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from uniref.training.samples import ImageEntry, VideoEntry

__all__ = ["coco_json_entries", "davis_folder_entries", "ytvis_json_entries", "read_rgb", "read_ids"]


def read_rgb(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB (EXIF orientation applied)."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def read_ids(path: Path) -> np.ndarray:
    """Object-id map of a palette or grey-level PNG, ``[H, W]``."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16", "1"):
            raise ValueError(f"annotation PNG must be a palette or grey-level image, got mode {im.mode!r}: {path}")
        return np.asarray(im)


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {path} ({exc})") from exc


def _decode_segmentation(seg: Any, h: int, w: int, where: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        if not seg:
            return np.zeros((h, w), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, h, w)
    elif isinstance(seg, dict) and "counts" in seg:
        counts = seg["counts"]
        rle = {"size": list(seg.get("size", [h, w])), "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"{where}: unsupported segmentation (expected RLE or polygons), got {type(seg).__name__}")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (h, w):
        raise ValueError(f"{where}: segmentation size {mask.shape} differs from the image size {(h, w)}")
    return mask


def _expressions(ann: dict) -> tuple[str, ...]:
    out = []
    for item in list(ann.get("expressions") or []) + list(ann.get("sentences") or []):
        text = item.get("sent", item.get("raw")) if isinstance(item, dict) else item
        if isinstance(text, str) and text.strip():
            out.append(text)
    return tuple(out)


def coco_json_entries(root: str | Path, task: str, *, images: str | Path | None = None,
                      annotations: str | None = None) -> list[ImageEntry]:
    """Image entries of a COCO-style JSON for ``task`` (``det``, ``ris``, ``fss``, or ``vos``/``rvos``)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset path does not exist: {root}")
    if root.is_dir():
        json_path = root / (annotations or "annotations.json")
        image_dir = Path(images) if images is not None else root / "images"
        if images is not None and not image_dir.is_absolute():
            image_dir = root / image_dir
    else:
        json_path = root
        image_dir = Path(images) if images is not None else root.parent / "images"
    data = _load_json(json_path, "COCO-style annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or "annotations" not in data:
        raise ValueError(f"{json_path} is not a COCO-style file: it needs 'images' and 'annotations' lists")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir} (pass images=... for another place)")
    image_info = {im["id"]: im for im in data["images"]}
    categories = {c["id"]: c.get("name", str(c["id"])) for c in data.get("categories", [])}
    per_image: dict[Any, list[dict]] = {}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        if ann.get("image_id") not in image_info:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} points to image {ann.get('image_id')}, "
                             "which is not in 'images'")
        per_image.setdefault(ann["image_id"], []).append(ann)

    def image_loader(info: dict) -> Callable[[], np.ndarray]:
        return lambda: read_rgb(image_dir / info["file_name"])

    def masks_loader(info: dict, anns: Sequence[dict], union: bool = False) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            h, w = int(info["height"]), int(info["width"])
            masks = [_decode_segmentation(a["segmentation"], h, w, f"{json_path} annotation {a.get('id')}")
                     for a in anns]
            stacked = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)
            return stacked.any(0, keepdims=True) if union else stacked
        return load

    entries: list[ImageEntry] = []
    if task in ("det", "vos"):
        for image_id, info in image_info.items():
            anns = per_image.get(image_id, [])
            if task == "vos" and not anns:
                continue
            entries.append(ImageEntry(f"{json_path.name}:image{image_id}", image_loader(info), masks_loader(info, anns)))
    elif task in ("ris", "rvos"):
        for image_id, anns in per_image.items():
            info = image_info[image_id]
            for ann in anns:
                texts = _expressions(ann)
                if texts:
                    entries.append(ImageEntry(f"{json_path.name}:ann{ann.get('id')}", image_loader(info),
                                              masks_loader(info, [ann]), expressions=texts))
    elif task == "fss":
        for image_id, anns in per_image.items():
            info = image_info[image_id]
            by_cat: dict[Any, list[dict]] = {}
            for ann in anns:
                by_cat.setdefault(ann.get("category_id"), []).append(ann)
            for cat, cat_anns in by_cat.items():
                entries.append(ImageEntry(f"{json_path.name}:image{image_id}:cat{cat}", image_loader(info),
                                          masks_loader(info, cat_anns, union=True),
                                          category=str(categories.get(cat, cat))))
    else:
        raise ValueError(f"COCO-style data supports tasks det, ris, fss, vos, rvos; got {task!r}")
    return entries


def davis_folder_entries(root: str | Path, task: str, *, videos: Sequence[str] | None = None) -> list[VideoEntry]:
    """Video entries of a DAVIS-style folder for ``vos`` or ``rvos``."""
    if task not in ("vos", "rvos"):
        raise ValueError(f"DAVIS-style folders support tasks vos and rvos; got {task!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset path does not exist: {root}")
    frames_dir, ann_dir = root / "JPEGImages", root / "Annotations"
    for d in (frames_dir, ann_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"DAVIS-style folder needs {d}")
    # DAVIS releases nest one resolution level (JPEGImages/480p/<video>); accept it.
    if not any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for sub in frames_dir.iterdir() if sub.is_dir()
               for p in sub.iterdir()):
        nested = [sub for sub in frames_dir.iterdir() if sub.is_dir()]
        if len(nested) == 1 and (ann_dir / nested[0].name).is_dir():
            frames_dir, ann_dir = nested[0], ann_dir / nested[0].name
    expressions: dict = {}
    if task == "rvos":
        expressions = _load_json(root / "expressions.json", "RVOS expressions file (expressions.json)")
    names = sorted(p.name for p in frames_dir.iterdir() if p.is_dir()) if videos is None else list(videos)
    entries: list[VideoEntry] = []
    for name in names:
        if not (frames_dir / name).is_dir():
            raise FileNotFoundError(f"video folder not found: {frames_dir / name}")
        frames = {p.stem: p for p in (frames_dir / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
        anns = sorted(p for p in (ann_dir / name).glob("*.png")) if (ann_dir / name).is_dir() else []
        pairs = []
        for ann in anns:
            if ann.stem not in frames:
                raise ValueError(f"annotation {ann} has no frame {name}/{ann.stem}.jpg in {frames_dir}")
            pairs.append((frames[ann.stem], ann))
        if not pairs:
            continue
        texts = {}
        if task == "rvos":
            video_texts = expressions.get(name, {})
            texts = {int(k): tuple(v if isinstance(v, list) else [v]) for k, v in video_texts.items()}
            if not texts:
                continue

        def objects(i: int, pairs=pairs) -> dict[int, np.ndarray]:
            ids = read_ids(pairs[i][1])
            return {int(k): ids == k for k in np.unique(ids) if k not in (0, 255)}

        entries.append(VideoEntry(name, len(pairs), lambda i, pairs=pairs: read_rgb(pairs[i][0]), objects, texts))
    return entries


def ytvis_json_entries(root: str | Path, *, annotations: str = "annotations_train.json",
                       images: str = "train") -> list[VideoEntry]:
    """VOS entries of a YouTube-VIS / OVIS-style JSON (per-frame RLE ``segmentations`` of each instance)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset path does not exist: {root}")
    data = _load_json(root / annotations, "YTVIS-style annotation file")
    image_dir = root / images
    if not image_dir.is_dir():
        raise FileNotFoundError(f"frame folder not found: {image_dir}")
    per_video: dict[Any, list[dict]] = {}
    for ann in data.get("annotations", []):
        per_video.setdefault(ann["video_id"], []).append(ann)
    entries = []
    for video in data.get("videos", []):
        anns = per_video.get(video["id"], [])
        if not anns:
            continue
        files, h, w = video["file_names"], int(video["height"]), int(video["width"])

        def objects(i: int, anns=anns, h=h, w=w) -> dict[int, np.ndarray]:
            out = {}
            for k, ann in enumerate(anns):
                seg = ann["segmentations"][i]
                if seg is not None:
                    m = _decode_segmentation(seg, h, w, f"{root / annotations} video annotation {ann.get('id')}")
                    if m.any():
                        out[k + 1] = m
            return out

        entries.append(VideoEntry(str(video["id"]), len(files),
                                  lambda i, files=files: read_rgb(image_dir / files[i]), objects))
    return entries
