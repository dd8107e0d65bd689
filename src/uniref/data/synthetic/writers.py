"""Write the synthetic world in the benchmarks' native layouts, so the dataset readers and evaluators run on it.

* :func:`write_refer` — refer layout (RefCOCO): ``refcoco/refs(unc).p`` (builtin containers only),
  ``refcoco/instances.json`` (COCO RLE segmentations), ``images/train2014/*.jpg``; splits such as
  train / val / testA / testB (``testB`` scenes are crowded).
* :func:`write_fss` — FSS-1000 layout: class folders ``<split>_<shape>/{1..N}.jpg`` + ``.png`` masks (0/255)
  and ``<split>.txt`` class lists. In folder order "1.jpg" is the support of every other query; it differs
  from all of them in colour, size and texture.
* :func:`write_davis` — DAVIS 2017 layout: ``JPEGImages/480p/<seq>/00000.jpg``,
  ``Annotations/480p/<seq>/00000.png`` (palette; every frame), ``ImageSets/2017/<split>.txt``. Objects that
  enter later appear first on a later frame (score with the first-appearance protocol).
* :func:`write_refytvos` — Ref-YouTube-VOS layout: ``meta_expressions/<split>/meta_expressions.json``,
  ``<split>/JPEGImages``, ``<split>/Annotations`` (palette), ``<split>/meta.json``. Unlike the real
  ``valid`` split, ours keeps ``obj_id`` and the annotations, so it can be scored locally.

Images and frames are JPEG (quality 95, 4:4:4 chroma; compression changes pixels, masks stay exact PNG / RLE).
:func:`write_world` writes all four under one root. Every writer is deterministic: the same seed and sizes
give byte-identical files.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from uniref.data.synthetic.vocabulary import SHAPES
from uniref.data.synthetic.world import (
    WorldConfig,
    fss_class_attributes,
    generate_clip,
    generate_fss_image,
    generate_ris_image,
    split_sizes,
)
from uniref.io.masks import save_binary_png, save_label_png
from uniref.io.rle import encode_rle

__all__ = ["WorldLayout", "write_refer", "write_fss", "write_davis", "write_refytvos", "write_world",
           "DEFAULT_SIZES"]

JPEG_QUALITY = 95

DEFAULT_SIZES: dict[str, dict[str, int]] = {
    "ris": {"train": 200, "val": 50, "testA": 50, "testB": 50},  # images per split
    "fss": {"train": 10, "val": 10},  # images per class (6 classes per split)
    "vos": {"train": 20, "val": 10},  # clips per split
    "rvos": {"train": 20, "valid": 10},  # clips per split
}


def _prepare(folder: Path, overwrite: bool) -> Path:
    """An empty folder: an existing non-empty one is an error unless ``overwrite`` (then it is replaced)."""
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_jpg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 4:4:4 chroma: the default 4:2:0 smears the colours of 10-pixel objects
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def _dump_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=None, separators=(",", ":")), encoding="utf-8")


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


# ------------------------------------------------------------------------------------------ refer


def write_refer(root: str | Path, seed: int, splits: Mapping[str, int] | None = None,
                config: WorldConfig = WorldConfig(), *, overwrite: bool = False) -> Path:
    """Write a RefCOCO-style dataset; returns the refer ``data`` root (open it with
    ``build_dataset("refcoco", root, split=...)``).

    Args:
        splits: images per split (default train 200, val 50, testA 50, testB 50).
    """
    root = _prepare(Path(root), overwrite)
    image_dir = root / "images" / "train2014"
    refs: list[dict] = []
    images: list[dict] = []
    annotations: list[dict] = []
    image_id = ann_id = ref_id = sent_id = 0
    for split, count in split_sizes(splits or DEFAULT_SIZES["ris"]):
        for index in range(count):
            item = generate_ris_image(seed, index, config, split)
            image_id += 1
            file_name = f"COCO_train2014_{image_id:012d}.jpg"
            _save_jpg(image_dir / file_name, item.image)
            images.append({"id": image_id, "file_name": file_name, "height": config.height, "width": config.width})
            ann_of: dict[int, int] = {}
            for k, obj in enumerate(item.scene.objects):
                mask = item.masks[k]
                if not mask.any():
                    continue
                ann_id += 1
                ann_of[k] = ann_id
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": SHAPES.index(obj.appearance.shape) + 1,
                    "segmentation": encode_rle(mask), "area": int(mask.sum()), "bbox": _bbox(mask), "iscrowd": 0,
                    "attributes": {"colour": obj.appearance.colour, "texture": obj.appearance.texture,
                                   "size": obj.appearance.size},
                })
            for k, expressions in sorted(item.expressions.items()):
                ref_id += 1
                sentences = []
                for e in expressions:
                    sent_id += 1
                    sent = e.text.lower()
                    sentences.append({"sent": sent, "raw": e.text, "tokens": sent.split(), "sent_id": sent_id,
                                      "kind": e.kind})
                refs.append({
                    "ref_id": ref_id, "ann_id": ann_of[k], "image_id": image_id, "split": split,
                    "category_id": SHAPES.index(item.scene.objects[k].appearance.shape) + 1,
                    "sentences": sentences, "sent_ids": [s["sent_id"] for s in sentences],
                    "file_name": file_name,
                })
    data_dir = root / "refcoco"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "refs(unc).p", "wb") as handle:
        pickle.dump(refs, handle, protocol=4)
    categories = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    _dump_json(data_dir / "instances.json", {"images": images, "annotations": annotations, "categories": categories})
    return root


# ------------------------------------------------------------------------------------------ FSS


def fss_class_name(split: str, shape: str) -> str:
    """The class-folder name of ``shape`` in ``split``."""
    return f"{split}_{shape}"


def write_fss(root: str | Path, seed: int, splits: Mapping[str, int] | None = None,
              config: WorldConfig = WorldConfig(), *, overwrite: bool = False) -> Path:
    """Write an FSS-1000-style dataset (every split holds the six shape classes); returns the root (open it
    with ``build_dataset("fss1000", root, split=...)``).

    Args:
        splits: images per class, per split (default train 10, val 10; at least 2).
    """
    root = _prepare(Path(root), overwrite)
    for split, per_class in split_sizes(splits or DEFAULT_SIZES["fss"]):
        if per_class < 2:
            raise ValueError(f"FSS split {split!r} needs at least 2 images per class, got {per_class}")
        names = []
        for shape in SHAPES:
            name = fss_class_name(split, shape)
            names.append(name)
            attributes = fss_class_attributes(seed, shape, per_class, split)
            for index in range(per_class):
                item = generate_fss_image(seed, shape, index, config, split, attributes=attributes[index])
                _save_jpg(root / name / f"{index + 1}.jpg", item.image)
                save_binary_png(root / name / f"{index + 1}.png", item.mask, overwrite=True)
        (root / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ DAVIS


def _frame_name(t: int) -> str:
    return f"{t:05d}"


def write_davis(root: str | Path, seed: int, splits: Mapping[str, int] | None = None,
                config: WorldConfig = WorldConfig(), *, overwrite: bool = False) -> Path:
    """Write a DAVIS-2017-style dataset; returns the ``DAVIS`` root (``build_dataset("davis17", root, ...)``).

    Sequences are named ``<split>_<index>``; every frame has its annotation PNG.

    Args:
        splits: clips per split (default train 20, val 10).
    """
    root = _prepare(Path(root), overwrite)
    for split, count in split_sizes(splits or DEFAULT_SIZES["vos"]):
        names = []
        for index in range(count):
            clip = generate_clip(seed, index, config, split)
            name = f"{split}_{index:04d}"
            names.append(name)
            for t in range(config.num_frames):
                _save_jpg(root / "JPEGImages" / "480p" / name / f"{_frame_name(t)}.jpg", clip.frames[t])
                save_label_png(root / "Annotations" / "480p" / name / f"{_frame_name(t)}.png", clip.labels[t],
                               overwrite=True)
        sets = root / "ImageSets" / "2017"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------ Ref-YouTube-VOS


def write_refytvos(root: str | Path, seed: int, splits: Mapping[str, int] | None = None,
                   config: WorldConfig = WorldConfig(), *, overwrite: bool = False) -> Path:
    """Write a Ref-YouTube-VOS-style dataset; returns the root (``build_dataset("refytvos", root, split=...)``).

    Videos are named ``<split>_<index>``; each object with expressions gets one expression id per sentence.
    An empty ``meta_expressions/test`` file is written so that ``valid`` is read as it is.

    Args:
        splits: referring clips per split (default train 20, valid 10).
    """
    root = _prepare(Path(root), overwrite)
    for split, count in split_sizes(splits or DEFAULT_SIZES["rvos"]):
        videos: dict[str, dict] = {}
        meta: dict[str, dict] = {}
        for index in range(count):
            clip = generate_clip(seed, index, config, split, referring=True)
            name = f"{split}_{index:04d}"
            frames = [_frame_name(t) for t in range(config.num_frames)]
            for t, frame in enumerate(frames):
                _save_jpg(root / split / "JPEGImages" / name / f"{frame}.jpg", clip.frames[t])
                save_label_png(root / split / "Annotations" / name / f"{frame}.png", clip.labels[t], overwrite=True)
            expressions: dict[str, dict] = {}
            for obj_id in sorted(clip.expressions):
                for e in clip.expressions[obj_id]:
                    expressions[str(len(expressions))] = {"exp": e.text, "obj_id": str(obj_id), "kind": e.kind}
            videos[name] = {"expressions": expressions, "frames": frames}
            objects = {}
            for obj_id in clip.object_ids:
                seen = [frames[t] for t in range(config.num_frames) if (clip.labels[t] == obj_id).any()]
                objects[str(obj_id)] = {"category": clip.layout.objects[obj_id - 1].appearance.shape, "frames": seen}
            meta[name] = {"objects": objects}
        _dump_json(root / "meta_expressions" / split / "meta_expressions.json", {"videos": videos})
        _dump_json(root / split / "meta.json", {"videos": meta})
        if not (root / split / "JPEGImages").exists():
            (root / split / "JPEGImages").mkdir(parents=True)
    test = root / "meta_expressions" / "test" / "meta_expressions.json"
    if not test.exists():
        _dump_json(test, {"videos": {}})
    return root


# ------------------------------------------------------------------------------------------ all


@dataclass(frozen=True)
class WorldLayout:
    """Where :func:`write_world` put each layout (pass these roots to the readers)."""

    refer: Path | None
    fss: Path | None
    davis: Path | None
    refytvos: Path | None


def write_world(
    root: str | Path,
    seed: int,
    *,
    ris: Mapping[str, int] | None = None,
    fss: Mapping[str, int] | None = None,
    vos: Mapping[str, int] | None = None,
    rvos: Mapping[str, int] | None = None,
    config: WorldConfig = WorldConfig(),
    overwrite: bool = False,
) -> WorldLayout:
    """Write the four layouts under ``root``: ``refer/``, ``fss1000/``, ``davis/`` and ``refytvos/``.

    The size mappings are ``{split: count}`` (see each writer; None = :data:`DEFAULT_SIZES`); an empty
    mapping skips that layout.
    """
    root = Path(root)
    out = {}
    for key, sizes, writer, folder in (("refer", ris, write_refer, "refer"), ("fss", fss, write_fss, "fss1000"),
                                       ("davis", vos, write_davis, "davis"),
                                       ("refytvos", rvos, write_refytvos, "refytvos")):
        if sizes is not None and len(sizes) == 0:
            out[key] = None
            continue
        out[key] = writer(root / folder, seed, sizes, config, overwrite=overwrite)
    return WorldLayout(**out)
