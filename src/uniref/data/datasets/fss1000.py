"""FSS-1000 few-shot segmentation, read from its class folders.

Layout: one folder per class holding `N.jpg` images and their `N.png` masks, either directly
under `root`, under `root/images/` (UniRef's layout) or under `root/fewshot_data/` (the
released zip).

The split is a class list, one class per line. The paper evaluates the 240-class **val**
split of HSNet / VAT (`data/splits/fss/val.txt` in those repositories). That file is not part
of the FSS-1000 download: copy it to `<root>/val.txt` (or `<root>/splits/fss/val.txt`) or pass
`split_file=`. `split="all"` uses every class folder and needs no file.

Protocol (spec 9.2 / 13.2): every image of a split class is a query; its supports are the
first k *other* images of its class in sorted file-name order. The official conversion sorts
the file names as strings ("1.jpg", "10.jpg", "2.jpg", ...), which `order="lexicographic"`
(the default) reproduces; `order="natural"` sorts by the number instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from .base import (
    DatasetReader,
    ImageSample,
    InconsistentDataError,
    MissingDataError,
    PngMask,
    Support,
    first_existing,
    read_lines,
    require_dir,
)

# HSNet/VAT name the training list "trn.txt".
_SPLIT_FILE_NAMES = {"train": ("trn", "train"), "trn": ("trn", "train"), "val": ("val",), "test": ("test",)}


def _natural_key(name: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


class FSS1000Dataset(DatasetReader[ImageSample]):
    """k-shot FSS-1000 queries with their supports.

    Args:
        root: the FSS-1000 folder (class folders directly, or under `images/` / `fewshot_data/`).
        split: "val" (the paper's), "test", "train"/"trn", or "all" (every class folder).
        shots: k, the number of supports per query (the paper reports 1 and 5).
        split_file: the class list; looked up under `root` when omitted.
        order: "lexicographic" (official) or "natural" ordering of the images of a class.
    """

    def __init__(self, root: Path | str, split: str = "val", shots: int = 1,
                 split_file: Path | str | None = None,
                 order: Literal["lexicographic", "natural"] = "lexicographic") -> None:
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        if order not in ("lexicographic", "natural"):
            raise ValueError(f"order must be 'lexicographic' or 'natural', got {order!r}")
        self.root = require_dir(Path(root), "FSS-1000 root")
        self.split = split
        self.shots = shots
        self.order = order
        self.image_root = self._find_image_root()
        self.split_file: Path | None = None
        self.classes = self._read_classes(split, split_file)
        self._keys = [sample for name in self.classes for sample in self._class_samples(name)]

    def _find_image_root(self) -> Path:
        for candidate in (self.root / "images", self.root / "fewshot_data", self.root / "FSS-1000"):
            if candidate.is_dir():
                return candidate
        return self.root

    def _read_classes(self, split: str, split_file: Path | str | None) -> list[str]:
        if split_file is not None:
            path = Path(split_file)
        elif split == "all":
            return sorted(p.name for p in self.image_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        else:
            if split not in _SPLIT_FILE_NAMES:
                raise ValueError(f"unknown FSS-1000 split {split!r}; known: val, test, train, all")
            candidates = [folder / f"{stem}.txt"
                          for stem in _SPLIT_FILE_NAMES[split]
                          for folder in (self.root, self.root / "splits" / "fss", self.root / "splits",
                                         self.root.parent / "splits" / "fss")]
            try:
                path = first_existing(candidates, f"FSS-1000 {split} class list")
            except MissingDataError as error:
                raise MissingDataError(
                    f"{error}\nThe class list comes from HSNet/VAT "
                    f"(data/splits/fss/{_SPLIT_FILE_NAMES[split][0]}.txt); "
                    "put it under the root or pass split_file=") from None
        classes = read_lines(path, "FSS-1000 class list")
        if not classes:
            raise InconsistentDataError(f"FSS-1000 class list is empty: {path}")
        self.split_file = path
        return classes

    def _class_samples(self, name: str) -> list[ImageSample]:
        folder = require_dir(self.image_root / name, f"FSS-1000 class folder {name!r}")
        files = {p.name for p in folder.iterdir() if p.is_file()}
        images = [f for f in files if f.lower().endswith(".jpg")]
        images.sort(key=_natural_key if self.order == "natural" else None)
        for image in images:
            if f"{Path(image).stem}.png" not in files:
                raise MissingDataError(f"FSS-1000 image {folder / image} has no mask {Path(image).stem}.png")
        if len(images) <= self.shots:
            raise InconsistentDataError(
                f"FSS-1000 class folder {folder} has {len(images)} images; {self.shots}-shot needs at least "
                f"{self.shots + 1}")
        samples = []
        for image in images:
            supports = [s for s in images if s != image][: self.shots]
            samples.append(ImageSample(
                sample_id=f"{name}/{Path(image).stem}",
                image_path=folder / image,
                mask=PngMask(folder / f"{Path(image).stem}.png"),
                supports=tuple(Support(folder / s, PngMask(folder / f"{Path(s).stem}.png")) for s in supports),
                info={"class_name": name, "support_names": tuple(f"{name}/{Path(s).stem}" for s in supports)},
            ))
        return samples

    def _load(self, key: ImageSample) -> ImageSample:
        return key
