"""RefCOCO / RefCOCO+ / RefCOCOg in the `refer` layout (Licheng Yu's release).

Layout under `root` (the refer `data/` folder)::

    <dataset>/refs(<split_by>).p     pickle: list of refs {ref_id, ann_id, image_id, split,
                                     category_id, sentences: [{sent, raw, tokens, sent_id}]}
    <dataset>/instances.json         COCO images / annotations (polygon or RLE segmentation)
    images/mscoco/images/train2014/  COCO train2014 images (other usual places are tried too,
                                     or pass `image_dir`)

Evaluation entries follow the official protocol (spec 13.1): one entry per (ref, sentence),
i.e. one referred object with one expression.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Literal

from .base import (
    CocoMask,
    DatasetReader,
    ImageSample,
    InconsistentDataError,
    first_existing,
    load_json,
    require_dir,
    require_file,
)

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
# The benchmark splits the paper reports (spec 13.1).
EVAL_SPLITS = {
    ("refcoco", "unc"): ("val", "testA", "testB"),
    ("refcoco+", "unc"): ("val", "testA", "testB"),
    ("refcocog", "umd"): ("val", "test"),
}

_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                            "int", "float", "complex", "bool"})


class _ContainersOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build only plain builtin containers and scalars.

    A pickle can name any importable callable; refusing every global except harmless builtin
    types makes loading a downloaded `refs(*).p` unable to run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return super().find_class("builtins", name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a refs pickle")


def load_refs_pickle(path: Path) -> list[dict[str, Any]]:
    """Load a `refs(*).p` file safely (Python-2 pickles included).

    Python-2 `str` objects are decoded as UTF-8, falling back to Latin-1 for files whose
    byte strings are not UTF-8.
    """
    require_file(path, "refs pickle")
    data = path.read_bytes()
    for encoding in ("utf-8", "latin-1"):
        try:
            refs = _ContainersOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
            break
        except UnicodeDecodeError:
            continue
        except pickle.UnpicklingError as error:
            raise InconsistentDataError(f"cannot read refs pickle {path}: {error}") from error
    if not isinstance(refs, list):
        raise InconsistentDataError(f"refs pickle must hold a list of refs, got {type(refs).__name__}: {path}")
    return refs


def _image_dir_candidates(root: Path) -> list[Path]:
    return [
        root / "images" / "mscoco" / "images" / "train2014",
        root / "images" / "mscoco" / "train2014",
        root / "images" / "train2014",
        root / "train2014",
        root / "coco" / "train2014",
    ]


class RefCOCODataset(DatasetReader[ImageSample]):
    """Referring image segmentation entries of RefCOCO / RefCOCO+ / RefCOCOg.

    Args:
        root: the refer `data/` folder (holding `<dataset>/`), or the `<dataset>/` folder itself.
        dataset: "refcoco", "refcoco+" or "refcocog".
        split: any split present in the refs file ("val", "testA", "testB", "test", "train"...).
        split_by: "unc", "umd" or "google"; defaults to unc (RefCOCO/+) and umd (RefCOCOg).
        image_dir: COCO train2014 folder; searched under `root` when omitted.
        text_field: which sentence field is the expression: "sent" (the refer-cleaned,
            lower-cased text) or "raw" (as typed by the annotator). Both are kept in `info`.

    Each entry's `info` holds ref_id, ann_id, image_id, sent_id, category_id, split, bbox
    (COCO xywh), raw and sent.
    """

    def __init__(self, root: Path | str, dataset: str = "refcoco", split: str = "val",
                 split_by: str | None = None, image_dir: Path | str | None = None,
                 text_field: Literal["sent", "raw"] = "sent") -> None:
        if dataset not in DEFAULT_SPLIT_BY:
            raise ValueError(f"unknown refer dataset {dataset!r}; known: {sorted(DEFAULT_SPLIT_BY)}")
        if text_field not in ("sent", "raw"):
            raise ValueError(f"text_field must be 'sent' or 'raw', got {text_field!r}")
        self.root = require_dir(Path(root), "RefCOCO root")
        self.dataset = dataset
        self.split_by = split_by or DEFAULT_SPLIT_BY[dataset]
        self.split = split
        self.text_field = text_field

        refs_name = f"refs({self.split_by}).p"
        refs_path = first_existing([self.root / dataset / refs_name, self.root / refs_name],
                                   f"refs file of {dataset} (split_by={self.split_by})")
        data_dir = refs_path.parent
        self.refs_path = refs_path
        self.instances_path = data_dir / "instances.json"
        self.image_dir = (require_dir(Path(image_dir), "COCO image folder") if image_dir is not None
                          else first_existing(_image_dir_candidates(self.root) + _image_dir_candidates(data_dir),
                                              "COCO train2014 image folder (pass image_dir=...)", is_dir=True))

        refs = load_refs_pickle(refs_path)
        available = sorted({str(r.get("split")) for r in refs})
        split_refs = [r for r in refs if r.get("split") == split]
        if not split_refs:
            raise ValueError(f"split {split!r} not in {refs_path}; splits there: {available}")
        self._keys = self._index(split_refs)

    @property
    def splits(self) -> tuple[str, ...]:
        return EVAL_SPLITS.get((self.dataset, self.split_by), (self.split,))

    def _index(self, refs: list[dict[str, Any]]) -> list[ImageSample]:
        instances = load_json(self.instances_path, f"{self.dataset} instances.json")
        wanted_anns = {r["ann_id"] for r in refs}
        anns = {a["id"]: a for a in instances.get("annotations", []) if a["id"] in wanted_anns}
        images = {im["id"]: im for im in instances.get("images", [])}
        samples: list[ImageSample] = []
        for ref in refs:
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise InconsistentDataError(
                    f"ref {ref['ref_id']} points to annotation {ref['ann_id']}, absent from {self.instances_path}")
            image = images.get(ref["image_id"])
            if image is None:
                raise InconsistentDataError(
                    f"ref {ref['ref_id']} points to image {ref['image_id']}, absent from {self.instances_path}")
            height, width = int(image["height"]), int(image["width"])
            mask = CocoMask(ann["segmentation"], height, width)
            for position, sentence in enumerate(ref.get("sentences", [])):
                sent_id = sentence.get("sent_id", position)
                samples.append(ImageSample(
                    sample_id=f"{ref['ref_id']}_{sent_id}",
                    image_path=self.image_dir / image["file_name"],
                    mask=mask,
                    expression=str(sentence[self.text_field]),
                    height=height,
                    width=width,
                    info={
                        "ref_id": ref["ref_id"], "ann_id": ref["ann_id"], "image_id": ref["image_id"],
                        "sent_id": sent_id, "category_id": ref.get("category_id"), "split": ref["split"],
                        "bbox": ann.get("bbox"), "raw": sentence.get("raw"), "sent": sentence.get("sent"),
                    },
                ))
        return samples

    def _load(self, key: ImageSample) -> ImageSample:
        return key
